package envoysim

import "testing"

// Virtual host selection follows Envoy's domain search order: exact,
// longest suffix wildcard, longest prefix wildcard, then "*".
func TestFindVirtualHost(t *testing.T) {
	rt := &routeTable{vhosts: []*virtualHost{
		{name: "any", domains: []string{"*"}},
		{name: "suffix-short", domains: []string{"*.com"}},
		{name: "suffix-long", domains: []string{"*.example.com"}},
		{name: "prefix", domains: []string{"api.*"}},
		{name: "exact", domains: []string{"api.example.com", "api.example.com:8443"}},
	}}
	cases := map[string]string{
		"api.example.com":      "exact",
		"API.example.com":      "exact",
		"api.example.com:8443": "exact",
		"www.example.com":      "suffix-long",
		"foo.com":              "suffix-short",
		"api.internal":         "prefix",
		"localhost":            "any",
		// The port is part of the host unless ignore_port_in_host_matching.
		"www.example.com:80": "any",
	}
	for host, want := range cases {
		if got := rt.findVirtualHost(host); got == nil || got.name != want {
			t.Errorf("%s -> %v, want %s", host, got, want)
		}
	}
	rt.ignorePort = true
	if got := rt.findVirtualHost("www.example.com:80"); got.name != "suffix-long" {
		t.Errorf("ignore_port_in_host_matching: got %s", got.name)
	}
}

func TestRE2Substitution(t *testing.T) {
	cases := map[string]string{
		`/\1/x`:    `/${1}/x`,
		`\2\1`:     `${2}${1}`,
		`$literal`: `$$literal`,
		`a\\b`:     `a\b`,
	}
	for in, want := range cases {
		if got := re2Substitution(in); got != want {
			t.Errorf("re2Substitution(%q) = %q, want %q", in, got, want)
		}
	}
}

// Query mutations rebuild the query in key order, as Envoy's
// QueryParamsMulti does; values stay percent-encoded.
func TestReplaceQuery(t *testing.T) {
	q := parseQuery("z=1&a=%20x&z=2&flag")
	q["m"] = []string{"v"}
	delete(q, "flag")
	if got := replaceQuery("/p?old", q); got != "/p?a=%20x&m=v&z=1&z=2" {
		t.Errorf("replaceQuery = %q", got)
	}
	if got := replaceQuery("/p?x=1", queryParams{}); got != "/p" {
		t.Errorf("empty query = %q", got)
	}
}
