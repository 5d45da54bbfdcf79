package envoysim

import (
	"sort"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Type URLs the harness subscribes to over ADS.
const (
	ListenerType = resourcev3.ListenerType
	RouteType    = resourcev3.RouteType
	ClusterType  = resourcev3.ClusterType
)

// state is one immutable configuration; the ADS loop publishes a new one
// for every accepted response and request handling reads it lock-free.
type state struct {
	versions  map[string]string // type URL -> last ACKed version_info
	listeners map[string]*listener
	routes    map[string]*routeTable // from RDS, by route config name
	clusters  map[string]*cluster

	// active is the listener being served. A new listener that references
	// a route configuration not yet received stays warming, and the
	// previous one keeps serving, as Envoy does.
	active *listener
}

func newState() *state {
	return &state{
		versions:  map[string]string{},
		listeners: map[string]*listener{},
		routes:    map[string]*routeTable{},
		clusters:  map[string]*cluster{},
	}
}

// clone copies the maps so that the copy can be changed and published.
func (s *state) clone() *state {
	n := &state{
		versions:  make(map[string]string, len(s.versions)),
		listeners: make(map[string]*listener, len(s.listeners)),
		routes:    make(map[string]*routeTable, len(s.routes)),
		clusters:  make(map[string]*cluster, len(s.clusters)),
		active:    s.active,
	}
	for k, v := range s.versions {
		n.versions[k] = v
	}
	for k, v := range s.listeners {
		n.listeners[k] = v
	}
	for k, v := range s.routes {
		n.routes[k] = v
	}
	for k, v := range s.clusters {
		n.clusters[k] = v
	}
	return n
}

// routeTable returns the route table of a listener, nil while it warms.
func (s *state) routeTable(l *listener) *routeTable {
	if l == nil {
		return nil
	}
	if l.hcm.inline != nil {
		return l.hcm.inline
	}
	return s.routes[l.hcm.rdsName]
}

// activate picks the listener to serve: the named one, or the first by
// name, once its routes are available.
func (s *state) activate(name string) {
	if name == "" {
		names := make([]string, 0, len(s.listeners))
		for n := range s.listeners {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(names) > 0 {
			name = names[0]
		}
	}
	if l := s.listeners[name]; l != nil && s.routeTable(l) != nil {
		s.active = l
	}
}

// rdsNames lists the route configurations the listeners reference.
func (s *state) rdsNames() []string {
	set := map[string]bool{}
	for _, l := range s.listeners {
		if l.hcm.rdsName != "" {
			set[l.hcm.rdsName] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Config is a read-only view of the configuration the proxy serves, given
// to WaitForRoutes predicates.
type Config struct {
	s *state
}

// Version returns the last ACKed version_info of a resource type
// (ListenerType, RouteType or ClusterType), "" before the first ACK.
func (c *Config) Version(typeURL string) string {
	return c.s.versions[typeURL]
}

// Listener returns the name of the listener being served, "" if none is
// active yet.
func (c *Config) Listener() string {
	if c.s.active == nil {
		return ""
	}
	return c.s.active.name
}

// RouteConfig returns the name of the route configuration being served.
func (c *Config) RouteConfig() string {
	if rt := c.s.routeTable(c.s.active); rt != nil {
		return rt.name
	}
	return ""
}

// Clusters returns the names of the known clusters, sorted.
func (c *Config) Clusters() []string {
	out := make([]string, 0, len(c.s.clusters))
	for n := range c.s.clusters {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Match describes where the router would send a request.
type Match struct {
	VirtualHost string
	Route       string // the route's name, "" when unnamed
	Cluster     string // "" for a direct response
	Status      int    // direct response status, 0 for a forwarded route
	Path        string // :path after prefix_rewrite / regex_rewrite
}

// Match resolves a request for host and path (with query) through the
// active route table, as the router would. It reports false when no route
// matches.
func (c *Config) Match(host, path string) (Match, bool) {
	rt := c.s.routeTable(c.s.active)
	if rt == nil {
		return Match{}, false
	}
	h := headerMap{{":authority", host}, {":path", path}, {":method", "GET"}, {":scheme", "http"}}
	vh, r := rt.selectRoute(h)
	if r == nil {
		return Match{}, false
	}
	m := Match{VirtualHost: vh.name, Route: r.name, Path: path}
	if r.direct != nil {
		m.Status = r.direct.status
		return m, true
	}
	m.Cluster = r.action.clusterFor(h)
	m.Path, _ = r.action.rewritePath(&r.match, path)
	return m, true
}
