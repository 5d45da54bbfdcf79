// Package translate turns Warden's server registry into Envoy v3 resources
// in two pure, deterministic stages: registry entries to the intermediate
// model (BuildIR, package ir), then the model to validated Envoy protobufs
// (Build). It does no I/O; the same input always gives byte-identical
// resources and the same version.
package translate

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/xds/ir"
)

// Resources is one complete set of validated Envoy resources.
type Resources struct {
	Listeners []*listener.Listener
	Routes    []*route.RouteConfiguration
	Clusters  []*cluster.Cluster
	// Version is a content hash of all of the above: equal resources give
	// equal versions, so a change that changes nothing publishes nothing.
	Version string
	// Servers are the names of the servers published, sorted.
	Servers []string
}

// ByType is the resources in the shape go-control-plane's snapshots take.
func (r *Resources) ByType() map[resource.Type][]types.Resource {
	m := map[resource.Type][]types.Resource{
		resource.ListenerType: make([]types.Resource, 0, len(r.Listeners)),
		resource.RouteType:    make([]types.Resource, 0, len(r.Routes)),
		resource.ClusterType:  make([]types.Resource, 0, len(r.Clusters)),
	}
	for _, l := range r.Listeners {
		m[resource.ListenerType] = append(m[resource.ListenerType], l)
	}
	for _, rc := range r.Routes {
		m[resource.RouteType] = append(m[resource.RouteType], rc)
	}
	for _, c := range r.Clusters {
		m[resource.ClusterType] = append(m[resource.ClusterType], c)
	}
	return m
}

// Result is the outcome of Translate.
type Result struct {
	IR        ir.Config
	Resources *Resources
	// Skipped are the servers left out, sorted by name, with the reason.
	Skipped []ServerError
}

// Translate runs both stages. Servers that cannot be published are skipped
// and reported in Result.Skipped; the error is reserved for failures no
// single server caused (invalid settings), where nothing should be published.
func Translate(servers []store.Server, s Settings) (Result, error) {
	c, skipped, err := BuildIR(servers, s)
	if err != nil {
		return Result{}, err
	}
	res, more, err := Build(c)
	if err != nil {
		return Result{}, err
	}
	skipped = append(skipped, more...)
	slices.SortStableFunc(skipped, func(a, b ServerError) int { return cmp.Compare(a.Name, b.Name) })
	return Result{IR: c, Resources: res, Skipped: skipped}, nil
}

// CheckServer reports whether srv would be published with settings s, and
// why not: the admin API can answer a registration with it.
func CheckServer(srv store.Server, s Settings) error {
	res, err := Translate([]store.Server{srv}, s)
	if err != nil {
		return err
	}
	if len(res.Skipped) > 0 {
		return res.Skipped[0].Err
	}
	return nil
}

// Build is stage 2: the model to Envoy resources. Each server's routes and
// cluster are built and validated on their own so a server Envoy would
// reject is skipped rather than failing everyone. Build is pure; a
// Translator gives the same output faster when called repeatedly.
func Build(c ir.Config) (*Resources, []ServerError, error) {
	return NewTranslator().Build(c)
}

// Translator is stage 2 with a memo: the routes, cluster and encodings of a
// server whose model did not change are reused from the previous call, so
// one registration among 1,000 servers costs little more than one server.
// Output is identical to Build's. Safe for concurrent use.
type Translator struct {
	mu    sync.Mutex
	cache map[string]*serverOut
}

// serverOut is the validated output for one server and its encodings.
type serverOut struct {
	in           ir.Server
	caFile       string
	routes       []*route.Route
	cluster      *cluster.Cluster
	routeBytes   [][]byte
	clusterBytes []byte
	err          error
}

// NewTranslator returns a Translator with an empty memo.
func NewTranslator() *Translator { return &Translator{cache: map[string]*serverOut{}} }

// Build is stage 2; see the package function Build.
func (t *Translator) Build(c ir.Config) (*Resources, []ServerError, error) {
	if err := c.ValidateShared(); err != nil {
		return nil, nil, fmt.Errorf("xds settings: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()

	res := &Resources{}
	var skipped []ServerError
	var routes []*route.Route
	known := map[proto.Message][]byte{} // encodings already computed
	next := make(map[string]*serverOut, len(c.Servers))
	for _, s := range c.Servers {
		out := t.cache[s.Name]
		if out == nil || out.in != s || out.caFile != c.UpstreamCAFile {
			out = buildServer(c, s)
		}
		next[s.Name] = out
		if out.err != nil {
			skipped = append(skipped, ServerError{Name: s.Name, Err: out.err})
			continue
		}
		routes = append(routes, out.routes...)
		res.Clusters = append(res.Clusters, out.cluster)
		res.Servers = append(res.Servers, s.Name)
		for i, r := range out.routes {
			known[r] = out.routeBytes[i]
		}
		known[out.cluster] = out.clusterBytes
	}
	t.cache = next // servers no longer registered are forgotten

	own, err := wardenClusters(c)
	if err != nil {
		return nil, nil, fmt.Errorf("warden clusters: %w", err)
	}
	res.Clusters = append(res.Clusters, own...)
	slices.SortFunc(res.Clusters, func(a, b *cluster.Cluster) int { return cmp.Compare(a.GetName(), b.GetName()) })

	// Every server route was validated when built; the configuration around
	// them (Warden's routes, the virtual host) is validated here. Validation
	// rules of a route list apply item by item, so the two together cover
	// the assembled configuration.
	skeleton, err := routeConfiguration(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("route configuration: %w", err)
	}
	if err := skeleton.ValidateAll(); err != nil {
		return nil, nil, fmt.Errorf("route configuration %s: %w", RouteConfigName, err)
	}
	rc, err := routeConfiguration(routes)
	if err != nil {
		return nil, nil, fmt.Errorf("route configuration: %w", err)
	}
	l, err := mcpListener(c)
	if err != nil {
		return nil, nil, fmt.Errorf("listener: %w", err)
	}
	if err := l.ValidateAll(); err != nil {
		return nil, nil, fmt.Errorf("listener %s: %w", l.GetName(), err)
	}
	res.Listeners = []*listener.Listener{l}
	res.Routes = []*route.RouteConfiguration{rc}
	version, err := contentHash(res, known)
	if err != nil {
		return nil, nil, err
	}
	res.Version = version
	return res, skipped, nil
}

// buildServer builds and validates one server's routes and cluster, and
// encodes them for the content hash.
func buildServer(c ir.Config, s ir.Server) *serverOut {
	out := &serverOut{in: s, caFile: c.UpstreamCAFile}
	if err := s.Validate(); err != nil {
		out.err = err
		return out
	}
	rs, err := serverRoutes(s)
	if err == nil {
		err = validateRoutes(rs)
	}
	if err != nil {
		out.err = fmt.Errorf("route: %w", err)
		return out
	}
	cl, err := serverCluster(c, s)
	if err != nil {
		out.err = fmt.Errorf("cluster: %w", err)
		return out
	}
	for _, r := range rs {
		b, err := deterministic.Marshal(r)
		if err != nil {
			out.err = fmt.Errorf("encode route: %w", err)
			return out
		}
		out.routeBytes = append(out.routeBytes, b)
	}
	if out.clusterBytes, err = deterministic.Marshal(cl); err != nil {
		out.err = fmt.Errorf("encode cluster: %w", err)
		return out
	}
	out.routes, out.cluster = rs, cl
	return out
}

// contentHash hashes type, name and deterministic encoding of every resource
// in order; resources are sorted, so the hash depends on content only. Known
// holds encodings computed before (per-server routes and clusters). A route
// configuration is hashed as its encoding without routes, then each route:
// every field is covered without encoding 2,000 routes again.
func contentHash(r *Resources, known map[proto.Message][]byte) (string, error) {
	h := sha256.New()
	write := func(typ, name string, b []byte) {
		fmt.Fprintf(h, "%s\x00%s\x00%d\x00", typ, name, len(b))
		h.Write(b)
	}
	encode := func(m proto.Message) ([]byte, error) {
		if b, ok := known[m]; ok {
			return b, nil
		}
		return deterministic.Marshal(m)
	}
	for _, l := range r.Listeners {
		b, err := encode(l)
		if err != nil {
			return "", fmt.Errorf("hash listener: %w", err)
		}
		write(resource.ListenerType, l.GetName(), b)
	}
	for _, rc := range r.Routes {
		saved := make([][]*route.Route, len(rc.GetVirtualHosts()))
		for i, vh := range rc.GetVirtualHosts() {
			saved[i], vh.Routes = vh.Routes, nil
		}
		b, err := deterministic.Marshal(rc)
		for i, vh := range rc.GetVirtualHosts() {
			vh.Routes = saved[i]
		}
		if err != nil {
			return "", fmt.Errorf("hash route configuration: %w", err)
		}
		write(resource.RouteType, rc.GetName(), b)
		for _, vh := range rc.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				b, err := encode(rt)
				if err != nil {
					return "", fmt.Errorf("hash route: %w", err)
				}
				write("route", rt.GetName(), b)
			}
		}
	}
	for _, c := range r.Clusters {
		b, err := encode(c)
		if err != nil {
			return "", fmt.Errorf("hash cluster: %w", err)
		}
		write(resource.ClusterType, c.GetName(), b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
