package envoysim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// routeTable is a compiled RouteConfiguration.
type routeTable struct {
	name                string
	vhosts              []*virtualHost
	perFilter           map[string]*perFilter
	reqHeaders          headerMutations
	respHeaders         headerMutations
	mostSpecificWins    bool
	ignorePort          bool
	internalOnlyHeaders []string
}

type virtualHost struct {
	name        string
	domains     []string
	routes      []*route
	perFilter   map[string]*perFilter
	reqHeaders  headerMutations
	respHeaders headerMutations
}

type route struct {
	name        string
	match       routeMatcher
	direct      *directResponse
	action      *routeAction
	perFilter   map[string]*perFilter
	reqHeaders  headerMutations
	respHeaders headerMutations
}

type directResponse struct {
	status int
	body   []byte
}

type weightedCluster struct {
	name   string
	weight uint32
}

type routeAction struct {
	cluster       string
	clusterHeader string
	weighted      []weightedCluster
	notFoundCode  int

	prefixRewrite string
	regexRewrite  *regexp.Regexp
	regexSubst    string

	hostLiteral string
	autoHost    bool
	hostHeader  string
	appendXFH   bool

	timeout     time.Duration
	idleTimeout *time.Duration // nil: the connection manager's stream_idle_timeout applies
	// maxStream is max_stream_duration.max_stream_duration; nil: the
	// connection manager's applies, 0: none.
	maxStream *time.Duration

	// retry is the route's retry_policy, or its virtual host's; nil: no
	// retries. bufferLimit is how much request body is kept for them.
	retry       *retryPolicy
	ownRetry    bool
	bufferLimit int64
}

// routeMatcher is a compiled RouteMatch.
type routeMatcher struct {
	kind          string // prefix, path, path_separated_prefix, regex
	value         string
	re            *regexp.Regexp
	caseSensitive bool
	headers       []*headerMatcher
	query         []*queryMatcher
}

type queryMatcher struct {
	name    string
	str     *stringMatcher
	present bool
}

func compileRouteConfig(rc *routev3.RouteConfiguration) (*routeTable, error) {
	if err := validate(rc); err != nil {
		return nil, err
	}
	if rc.GetVhds() != nil {
		return nil, errors.New("vhds is not supported by envoysim")
	}
	t := &routeTable{
		name:             rc.GetName(),
		mostSpecificWins: rc.GetMostSpecificHeaderMutationsWins(),
		ignorePort:       rc.GetIgnorePortInHostMatching(),
	}
	for _, k := range rc.GetInternalOnlyHeaders() {
		t.internalOnlyHeaders = append(t.internalOnlyHeaders, strings.ToLower(k))
	}
	var err error
	if t.perFilter, err = compilePerFilter(rc.GetTypedPerFilterConfig()); err != nil {
		return nil, err
	}
	if t.reqHeaders, err = compileHeaderMutations(rc.GetRequestHeadersToAdd(), rc.GetRequestHeadersToRemove()); err != nil {
		return nil, err
	}
	if t.respHeaders, err = compileHeaderMutations(rc.GetResponseHeadersToAdd(), rc.GetResponseHeadersToRemove()); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, vh := range rc.GetVirtualHosts() {
		cvh, err := compileVirtualHost(vh)
		if err != nil {
			return nil, fmt.Errorf("virtual host %q: %w", vh.GetName(), err)
		}
		// Envoy rejects a domain that appears in two virtual hosts.
		for _, d := range cvh.domains {
			if seen[d] {
				return nil, fmt.Errorf("only unique values for domains are permitted. Duplicate entry of domain %s", d)
			}
			seen[d] = true
		}
		t.vhosts = append(t.vhosts, cvh)
	}
	return t, nil
}

func compileVirtualHost(vh *routev3.VirtualHost) (*virtualHost, error) {
	if vh.GetRequireTls() != routev3.VirtualHost_NONE {
		return nil, errors.New("require_tls is not supported by envoysim")
	}
	out := &virtualHost{name: vh.GetName()}
	for _, d := range vh.GetDomains() {
		out.domains = append(out.domains, strings.ToLower(d))
	}
	var err error
	if out.perFilter, err = compilePerFilter(vh.GetTypedPerFilterConfig()); err != nil {
		return nil, err
	}
	if out.reqHeaders, err = compileHeaderMutations(vh.GetRequestHeadersToAdd(), vh.GetRequestHeadersToRemove()); err != nil {
		return nil, err
	}
	if out.respHeaders, err = compileHeaderMutations(vh.GetResponseHeadersToAdd(), vh.GetResponseHeadersToRemove()); err != nil {
		return nil, err
	}
	vhRetry, err := compileRetryPolicy(vh.GetRetryPolicy())
	if err != nil {
		return nil, fmt.Errorf("retry_policy: %w", err)
	}
	if vh.GetRetryPolicyTypedConfig() != nil || vh.GetHedgePolicy() != nil {
		return nil, errors.New("retry_policy_typed_config and hedge_policy are not supported by envoysim")
	}
	vhLimit := int64(defaultBufferLimit)
	//lint:ignore SA1019 Envoy still honours the deprecated per_request_buffer_limit_bytes
	if l := vh.GetPerRequestBufferLimitBytes(); l != nil {
		vhLimit = int64(l.GetValue())
	}
	for i, r := range vh.GetRoutes() {
		cr, err := compileRoute(r)
		if err != nil {
			return nil, fmt.Errorf("route %d (%q): %w", i, r.GetName(), err)
		}
		// A route's retry_policy replaces the virtual host's as a whole.
		if a := cr.action; a != nil {
			if !a.ownRetry {
				a.retry = vhRetry
			}
			a.bufferLimit = vhLimit
			//lint:ignore SA1019 see above
			if l := r.GetPerRequestBufferLimitBytes(); l != nil {
				a.bufferLimit = int64(l.GetValue())
			}
		}
		out.routes = append(out.routes, cr)
	}
	return out, nil
}

func compileRoute(r *routev3.Route) (*route, error) {
	out := &route{name: r.GetName()}
	m, err := compileRouteMatch(r.GetMatch())
	if err != nil {
		return nil, err
	}
	out.match = m
	if out.perFilter, err = compilePerFilter(r.GetTypedPerFilterConfig()); err != nil {
		return nil, err
	}
	if out.reqHeaders, err = compileHeaderMutations(r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove()); err != nil {
		return nil, err
	}
	if out.respHeaders, err = compileHeaderMutations(r.GetResponseHeadersToAdd(), r.GetResponseHeadersToRemove()); err != nil {
		return nil, err
	}
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		ra, err := compileRouteAction(a.Route, &out.match)
		if err != nil {
			return nil, err
		}
		out.action = ra
	case *routev3.Route_DirectResponse:
		body, err := readDataSource(a.DirectResponse.GetBody())
		if err != nil {
			return nil, fmt.Errorf("direct_response body: %w", err)
		}
		out.direct = &directResponse{status: int(a.DirectResponse.GetStatus()), body: body}
	default:
		return nil, fmt.Errorf("route action %T is not supported by envoysim", a)
	}
	return out, nil
}

// readDataSource reads a core.v3.DataSource the way Envoy does at config
// load time.
func readDataSource(ds *corev3.DataSource) ([]byte, error) {
	switch s := ds.GetSpecifier().(type) {
	case nil:
		return nil, nil
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case *corev3.DataSource_Filename:
		return os.ReadFile(s.Filename)
	case *corev3.DataSource_EnvironmentVariable:
		v, ok := os.LookupEnv(s.EnvironmentVariable)
		if !ok {
			return nil, fmt.Errorf("environment variable %q is not set", s.EnvironmentVariable)
		}
		return []byte(v), nil
	default:
		return nil, fmt.Errorf("data source %T is not supported", s)
	}
}

func compileRouteMatch(m *routev3.RouteMatch) (routeMatcher, error) {
	rm := routeMatcher{caseSensitive: m.GetCaseSensitive() == nil || m.GetCaseSensitive().GetValue()}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		rm.kind, rm.value = "prefix", p.Prefix
	case *routev3.RouteMatch_Path:
		rm.kind, rm.value = "path", p.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		rm.kind, rm.value = "path_separated_prefix", p.PathSeparatedPrefix
	case *routev3.RouteMatch_SafeRegex:
		re, err := compileRegex(p.SafeRegex)
		if err != nil {
			return rm, err
		}
		rm.kind, rm.re = "regex", re
	default:
		return rm, fmt.Errorf("path specifier %T is not supported by envoysim", p)
	}
	if m.GetGrpc() != nil || m.GetTlsContext() != nil || len(m.GetDynamicMetadata()) > 0 || m.GetRuntimeFraction() != nil {
		return rm, errors.New("grpc, tls_context, dynamic_metadata and runtime_fraction matchers are not supported by envoysim")
	}
	for _, h := range m.GetHeaders() {
		hm, err := compileHeaderMatcher(h)
		if err != nil {
			return rm, err
		}
		rm.headers = append(rm.headers, hm)
	}
	for _, q := range m.GetQueryParameters() {
		qm := &queryMatcher{name: q.GetName()}
		switch s := q.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_StringMatch:
			sm, err := compileStringMatcher(s.StringMatch)
			if err != nil {
				return rm, err
			}
			qm.str = sm
		case *routev3.QueryParameterMatcher_PresentMatch:
			qm.present = s.PresentMatch
		default:
			return rm, fmt.Errorf("query parameter matcher %T is not supported by envoysim", s)
		}
		rm.query = append(rm.query, qm)
	}
	return rm, nil
}

func compileRouteAction(a *routev3.RouteAction, m *routeMatcher) (*routeAction, error) {
	ra := &routeAction{
		timeout:      durationOr(a.GetTimeout(), defaultRouteTimeout),
		notFoundCode: 503,
		appendXFH:    a.GetAppendXForwardedHost(),
	}
	rp, err := compileRetryPolicy(a.GetRetryPolicy())
	if err != nil {
		return nil, fmt.Errorf("retry_policy: %w", err)
	}
	ra.retry, ra.ownRetry = rp, rp != nil
	if a.GetRetryPolicyTypedConfig() != nil || a.GetHedgePolicy() != nil || len(a.GetRequestMirrorPolicies()) > 0 {
		return nil, errors.New("retry_policy_typed_config, hedge_policy and request_mirror_policies are not supported by envoysim")
	}
	switch a.GetClusterNotFoundResponseCode() {
	case routev3.RouteAction_NOT_FOUND:
		ra.notFoundCode = 404
	case routev3.RouteAction_INTERNAL_SERVER_ERROR:
		ra.notFoundCode = 500
	}
	if a.GetIdleTimeout() != nil {
		d := a.GetIdleTimeout().AsDuration()
		ra.idleTimeout = &d
	}
	if msd := a.GetMaxStreamDuration().GetMaxStreamDuration(); msd != nil {
		d := msd.AsDuration()
		ra.maxStream = &d
	}
	switch c := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		ra.cluster = c.Cluster
	case *routev3.RouteAction_ClusterHeader:
		ra.clusterHeader = strings.ToLower(c.ClusterHeader)
	case *routev3.RouteAction_WeightedClusters:
		for _, w := range c.WeightedClusters.GetClusters() {
			ra.weighted = append(ra.weighted, weightedCluster{name: w.GetName(), weight: w.GetWeight().GetValue()})
		}
	default:
		return nil, fmt.Errorf("cluster specifier %T is not supported by envoysim", c)
	}
	if a.GetPrefixRewrite() != "" {
		if m.kind == "regex" {
			return nil, errors.New("prefix_rewrite with a safe_regex match is not supported by envoysim")
		}
		ra.prefixRewrite = a.GetPrefixRewrite()
	}
	if rr := a.GetRegexRewrite(); rr != nil {
		re, err := regexp.Compile(rr.GetPattern().GetRegex())
		if err != nil {
			return nil, fmt.Errorf("regex_rewrite: %w", err)
		}
		ra.regexRewrite = re
		ra.regexSubst = re2Substitution(rr.GetSubstitution())
	}
	if a.GetPathRewritePolicy() != nil {
		return nil, errors.New("path_rewrite_policy is not supported by envoysim")
	}
	switch h := a.GetHostRewriteSpecifier().(type) {
	case nil:
	case *routev3.RouteAction_HostRewriteLiteral:
		ra.hostLiteral = h.HostRewriteLiteral
	case *routev3.RouteAction_AutoHostRewrite:
		ra.autoHost = h.AutoHostRewrite.GetValue()
	case *routev3.RouteAction_HostRewriteHeader:
		ra.hostHeader = strings.ToLower(h.HostRewriteHeader)
	default:
		return nil, fmt.Errorf("host rewrite %T is not supported by envoysim", h)
	}
	return ra, nil
}

// re2Substitution turns RE2's \N back-references into Go's ${N}.
func re2Substitution(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '$' {
			b.WriteString("$$")
			continue
		}
		if c == '\\' && i+1 < len(s) {
			n := s[i+1]
			if n >= '0' && n <= '9' {
				b.WriteString("${" + string(n) + "}")
				i++
				continue
			}
			if n == '\\' {
				b.WriteByte('\\')
				i++
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// splitPath separates the path from its query string (and drops a
// fragment), as Envoy matches routes on the path alone.
func splitPath(p string) (path, query string) {
	if i := strings.IndexByte(p, '#'); i >= 0 {
		p = p[:i]
	}
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i], p[i:]
	}
	return p, ""
}

// findVirtualHost follows Envoy's domain search order: exact, longest
// suffix wildcard ("*.example.com"), longest prefix wildcard
// ("example.*"), then "*".
func (t *routeTable) findVirtualHost(host string) *virtualHost {
	host = strings.ToLower(host)
	if t.ignorePort {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	for _, vh := range t.vhosts {
		for _, d := range vh.domains {
			if d == host {
				return vh
			}
		}
	}
	var best *virtualHost
	bestLen := 0
	for _, vh := range t.vhosts {
		for _, d := range vh.domains {
			if len(d) > 1 && d[0] == '*' {
				suffix := d[1:]
				if len(host) > len(suffix) && strings.HasSuffix(host, suffix) && len(suffix) > bestLen {
					best, bestLen = vh, len(suffix)
				}
			}
		}
	}
	if best != nil {
		return best
	}
	for _, vh := range t.vhosts {
		for _, d := range vh.domains {
			if len(d) > 1 && d[len(d)-1] == '*' {
				prefix := d[:len(d)-1]
				if len(host) > len(prefix) && strings.HasPrefix(host, prefix) && len(prefix) > bestLen {
					best, bestLen = vh, len(prefix)
				}
			}
		}
	}
	if best != nil {
		return best
	}
	for _, vh := range t.vhosts {
		for _, d := range vh.domains {
			if d == "*" {
				return vh
			}
		}
	}
	return nil
}

// selectRoute returns the virtual host and the first route that matches,
// in order, as Envoy's router does.
func (t *routeTable) selectRoute(h headerMap) (*virtualHost, *route) {
	vh := t.findVirtualHost(h.value(":authority"))
	if vh == nil {
		return nil, nil
	}
	path, query := splitPath(h.value(":path"))
	for _, r := range vh.routes {
		if r.match.matches(path, query, h) {
			return vh, r
		}
	}
	return vh, nil
}

func (m *routeMatcher) matches(path, query string, h headerMap) bool {
	p, v := path, m.value
	if !m.caseSensitive {
		p, v = strings.ToLower(p), strings.ToLower(v)
	}
	switch m.kind {
	case "prefix":
		if !strings.HasPrefix(p, v) {
			return false
		}
	case "path":
		if p != v {
			return false
		}
	case "path_separated_prefix":
		if p != v && !strings.HasPrefix(p, v+"/") {
			return false
		}
	case "regex":
		if !m.re.MatchString(path) {
			return false
		}
	}
	for _, hm := range m.headers {
		if !hm.match(h) {
			return false
		}
	}
	if len(m.query) > 0 {
		params := parseQuery(strings.TrimPrefix(query, "?"))
		for _, qm := range m.query {
			val, ok := params.first(qm.name)
			switch {
			case qm.str != nil:
				if !ok || !qm.str.match(val) {
					return false
				}
			case qm.present && !ok:
				return false
			}
		}
	}
	return true
}

// rewritePath applies prefix_rewrite or regex_rewrite to the path part of
// :path, keeping the query string. It reports whether a rewrite was
// configured (Envoy then records x-envoy-original-path).
func (a *routeAction) rewritePath(m *routeMatcher, full string) (string, bool) {
	path, query := splitPath(full)
	switch {
	case a.prefixRewrite != "":
		matched := len(m.value)
		if m.kind == "path" {
			matched = len(path)
		}
		if matched > len(path) {
			matched = len(path)
		}
		return a.prefixRewrite + path[matched:] + query, true
	case a.regexRewrite != nil:
		return a.regexRewrite.ReplaceAllString(path, a.regexSubst) + query, true
	}
	return full, false
}

// clusterFor picks the target cluster name of the route.
func (a *routeAction) clusterFor(h headerMap) string {
	switch {
	case a.cluster != "":
		return a.cluster
	case a.clusterHeader != "":
		return h.value(a.clusterHeader)
	case len(a.weighted) > 0:
		var total uint64
		for _, w := range a.weighted {
			total += uint64(w.weight)
		}
		if total == 0 {
			return a.weighted[0].name
		}
		n := rand.Uint64N(total)
		for _, w := range a.weighted {
			if n < uint64(w.weight) {
				return w.name
			}
			n -= uint64(w.weight)
		}
	}
	return ""
}

// perFilterChain returns the per-filter configs of a filter from the least
// to the most specific level, the order in which Envoy merges them.
func perFilterChain(t *routeTable, vh *virtualHost, r *route, name string) []*perFilter {
	var out []*perFilter
	if t != nil {
		if pf := t.perFilter[name]; pf != nil {
			out = append(out, pf)
		}
	}
	if vh != nil {
		if pf := vh.perFilter[name]; pf != nil {
			out = append(out, pf)
		}
	}
	if r != nil {
		if pf := r.perFilter[name]; pf != nil {
			out = append(out, pf)
		}
	}
	return out
}
