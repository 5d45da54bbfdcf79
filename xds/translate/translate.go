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
// reject is skipped rather than failing everyone.
func Build(c ir.Config) (*Resources, []ServerError, error) {
	if err := c.ValidateShared(); err != nil {
		return nil, nil, fmt.Errorf("xds settings: %w", err)
	}
	res := &Resources{}
	var skipped []ServerError
	var servers []builtServer
	for _, s := range c.Servers {
		if err := s.Validate(); err != nil {
			skipped = append(skipped, ServerError{Name: s.Name, Err: err})
			continue
		}
		rs, err := serverRoutes(s)
		if err != nil {
			skipped = append(skipped, ServerError{Name: s.Name, Err: fmt.Errorf("route: %w", err)})
			continue
		}
		cl, err := serverCluster(c, s)
		if err != nil {
			skipped = append(skipped, ServerError{Name: s.Name, Err: fmt.Errorf("cluster: %w", err)})
			continue
		}
		servers = append(servers, builtServer{s.Name, rs})
		res.Clusters = append(res.Clusters, cl)
	}
	own, err := wardenClusters(c)
	if err != nil {
		return nil, nil, fmt.Errorf("warden clusters: %w", err)
	}
	res.Clusters = append(res.Clusters, own...)
	slices.SortFunc(res.Clusters, func(a, b *cluster.Cluster) int { return cmp.Compare(a.GetName(), b.GetName()) })

	rc, servers, bad, err := assembleRoutes(servers)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range bad {
		skipped = append(skipped, e)
		res.Clusters = slices.DeleteFunc(res.Clusters, func(c *cluster.Cluster) bool { return c.GetName() == ClusterName(e.Name) })
	}
	for _, b := range servers {
		res.Servers = append(res.Servers, b.name)
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
	version, err := contentHash(res)
	if err != nil {
		return nil, nil, err
	}
	res.Version = version
	return res, skipped, nil
}

// builtServer is one server's routes, before assembly.
type builtServer struct {
	name   string
	routes []*route.Route
}

// assembleRoutes builds and validates the route configuration. Fast path:
// validate the assembled configuration once. Only when that fails are the
// servers' routes validated one by one, to skip the ones at fault (returned
// as bad) and keep the rest.
func assembleRoutes(servers []builtServer) (*route.RouteConfiguration, []builtServer, []ServerError, error) {
	assemble := func(servers []builtServer) (*route.RouteConfiguration, error) {
		var routes []*route.Route
		for _, b := range servers {
			routes = append(routes, b.routes...)
		}
		rc, err := routeConfiguration(routes)
		if err != nil {
			return nil, err
		}
		return rc, rc.ValidateAll()
	}
	rc, err := assemble(servers)
	if err == nil {
		return rc, servers, nil, nil
	}
	var kept []builtServer
	var bad []ServerError
	for _, b := range servers {
		if verr := validateRoutes(b.routes); verr != nil {
			bad = append(bad, ServerError{Name: b.name, Err: fmt.Errorf("route: %w", verr)})
			continue
		}
		kept = append(kept, b)
	}
	if rc, err = assemble(kept); err != nil {
		return nil, nil, nil, fmt.Errorf("route configuration %s: %w", RouteConfigName, err)
	}
	return rc, kept, bad, nil
}

// contentHash hashes type, name and deterministic encoding of every resource
// in order. Resources are already sorted, so the hash depends on content only.
func contentHash(r *Resources) (string, error) {
	h := sha256.New()
	add := func(typ, name string, m proto.Message) error {
		b, err := deterministic.Marshal(m)
		if err != nil {
			return fmt.Errorf("hash %s %s: %w", typ, name, err)
		}
		fmt.Fprintf(h, "%s\x00%s\x00%d\x00", typ, name, len(b))
		h.Write(b)
		return nil
	}
	for _, l := range r.Listeners {
		if err := add(resource.ListenerType, l.GetName(), l); err != nil {
			return "", err
		}
	}
	for _, rc := range r.Routes {
		if err := add(resource.RouteType, rc.GetName(), rc); err != nil {
			return "", err
		}
	}
	for _, c := range r.Clusters {
		if err := add(resource.ClusterType, c.GetName(), c); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
