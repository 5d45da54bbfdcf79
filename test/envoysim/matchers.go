//lint:file-ignore SA1019 the deprecated header matchers are still accepted by Envoy, so by the harness

package envoysim

import (
	"fmt"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// stringMatcher is a compiled type.matcher.v3.StringMatcher.
type stringMatcher struct {
	kind       string // exact, prefix, suffix, contains, regex
	value      string
	re         *regexp.Regexp
	ignoreCase bool
}

// compileRegex compiles an Envoy RE2 pattern for a full match, which is how
// Envoy evaluates safe_regex everywhere (RE2::FullMatch). Go's regexp is RE2.
func compileRegex(m *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	if m == nil {
		return nil, fmt.Errorf("safe_regex: missing regex")
	}
	re, err := regexp.Compile(`^(?:` + m.GetRegex() + `)$`)
	if err != nil {
		return nil, fmt.Errorf("safe_regex %q: %w", m.GetRegex(), err)
	}
	return re, nil
}

func compileStringMatcher(m *matcherv3.StringMatcher) (*stringMatcher, error) {
	sm := &stringMatcher{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		sm.kind, sm.value = "exact", p.Exact
	case *matcherv3.StringMatcher_Prefix:
		sm.kind, sm.value = "prefix", p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		sm.kind, sm.value = "suffix", p.Suffix
	case *matcherv3.StringMatcher_Contains:
		sm.kind, sm.value = "contains", p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileRegex(p.SafeRegex)
		if err != nil {
			return nil, err
		}
		sm.kind, sm.re = "regex", re
	default:
		return nil, fmt.Errorf("string matcher %T is not supported by envoysim", p)
	}
	if sm.ignoreCase {
		sm.value = strings.ToLower(sm.value)
	}
	return sm, nil
}

func (m *stringMatcher) match(s string) bool {
	if m.kind == "regex" {
		// ignore_case does not apply to safe_regex in Envoy.
		return m.re.MatchString(s)
	}
	if m.ignoreCase {
		s = strings.ToLower(s)
	}
	switch m.kind {
	case "exact":
		return s == m.value
	case "prefix":
		return strings.HasPrefix(s, m.value)
	case "suffix":
		return strings.HasSuffix(s, m.value)
	case "contains":
		return strings.Contains(s, m.value)
	}
	return false
}

// listMatcher is a compiled ListStringMatcher: any pattern matches.
type listMatcher []*stringMatcher

func compileListMatcher(l *matcherv3.ListStringMatcher) (listMatcher, error) {
	if l == nil {
		return nil, nil
	}
	out := make(listMatcher, 0, len(l.GetPatterns()))
	for _, p := range l.GetPatterns() {
		m, err := compileStringMatcher(p)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func (l listMatcher) match(s string) bool {
	for _, m := range l {
		if m.match(s) {
			return true
		}
	}
	return false
}

// headerMatcher is a compiled route.v3.HeaderMatcher. Envoy matches a
// repeated header against its values joined with ",".
type headerMatcher struct {
	name         string
	str          *stringMatcher
	present      *bool
	invert       bool
	missingEmpty bool
}

func compileHeaderMatcher(h *routev3.HeaderMatcher) (*headerMatcher, error) {
	hm := &headerMatcher{
		name:         strings.ToLower(h.GetName()),
		invert:       h.GetInvertMatch(),
		missingEmpty: h.GetTreatMissingHeaderAsEmpty(),
	}
	var err error
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case nil:
		t := true
		hm.present = &t
	case *routev3.HeaderMatcher_PresentMatch:
		hm.present = &s.PresentMatch
	case *routev3.HeaderMatcher_StringMatch:
		hm.str, err = compileStringMatcher(s.StringMatch)
	case *routev3.HeaderMatcher_ExactMatch:
		hm.str = &stringMatcher{kind: "exact", value: s.ExactMatch}
	case *routev3.HeaderMatcher_PrefixMatch:
		hm.str = &stringMatcher{kind: "prefix", value: s.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		hm.str = &stringMatcher{kind: "suffix", value: s.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		hm.str = &stringMatcher{kind: "contains", value: s.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		var re *regexp.Regexp
		re, err = compileRegex(s.SafeRegexMatch)
		hm.str = &stringMatcher{kind: "regex", re: re}
	default:
		err = fmt.Errorf("header matcher %T is not supported by envoysim", s)
	}
	if err != nil {
		return nil, fmt.Errorf("header matcher %q: %w", h.GetName(), err)
	}
	return hm, nil
}

func (m *headerMatcher) match(h headerMap) bool {
	v, ok := h.joined(m.name)
	if !ok && m.missingEmpty {
		v, ok = "", true
	}
	var res bool
	switch {
	case m.present != nil:
		res = ok == *m.present
	case !ok:
		// A missing header never matches a value matcher, inverted or not.
		return false
	default:
		res = m.str.match(v)
	}
	return res != m.invert
}
