package xds

import (
	"context"
	"slices"
	"strings"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/xds/internal/deepvalidate"
	"github.com/warden-mcp/warden/xds/translate"
)

func TestADSReceiveAckUpdateNoOpAndNACK(t *testing.T) {
	src := &memSource{servers: []store.Server{srv("alpha")}}
	h := start(t, src)
	eventually(t, "first publish", func() bool { return h.xds.Status().Ready })

	c := newADSClient(t, h.conn(t), "envoy-1")
	cds, lds, rds := c.bootstrap()
	v1 := cds.GetVersionInfo()
	if v1 == "" || lds.GetVersionInfo() != v1 || rds.GetVersionInfo() != v1 {
		t.Fatalf("versions differ across types: %s %s %s", v1, lds.GetVersionInfo(), rds.GetVersionInfo())
	}
	if got := clusterNames(t, cds); !slices.Equal(got, []string{"mcp_alpha", "warden_authz", "warden_http"}) {
		t.Fatalf("clusters %v", got)
	}
	// What Envoy receives is exactly what was validated, Any included.
	for _, r := range []*discovery.DiscoveryResponse{cds, lds, rds} {
		for _, a := range r.GetResources() {
			m, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			if err := deepvalidate.Message(m); err != nil {
				t.Fatalf("served resource invalid: %v", err)
			}
		}
	}
	var l listener.Listener
	if err := lds.GetResources()[0].UnmarshalTo(&l); err != nil || l.GetName() != translate.ListenerName {
		t.Fatalf("listener %q: %v", l.GetName(), err)
	}
	var rc route.RouteConfiguration
	if err := rds.GetResources()[0].UnmarshalTo(&rc); err != nil || rc.GetName() != translate.RouteConfigName {
		t.Fatalf("routes %q: %v", rc.GetName(), err)
	}

	// A registration pushes a new version of every type.
	src.Set(srv("alpha"), srv("bravo"))
	cds2 := c.next(resource.ClusterType)
	v2 := cds2.GetVersionInfo()
	if v2 == v1 {
		t.Fatal("registration did not change the version")
	}
	if got := clusterNames(t, cds2); !slices.Contains(got, "mcp_bravo") {
		t.Fatalf("new server missing from CDS: %v", got)
	}
	c.ack(cds2)
	lds2 := c.next(resource.ListenerType)
	c.ack(lds2)
	rds2 := c.next(resource.RouteType)
	c.ack(rds2, translate.RouteConfigName)
	if lds2.GetVersionInfo() != v2 || rds2.GetVersionInfo() != v2 {
		t.Fatalf("LDS/RDS versions %s %s, want %s", lds2.GetVersionInfo(), rds2.GetVersionInfo(), v2)
	}
	published := h.metric(t, "warden_xds_snapshots_published_total")

	// A change Envoy cannot see publishes nothing: the next response the
	// client gets is the one of the following real change.
	described := srv("bravo")
	described.Description = "now with a description"
	src.Set(srv("alpha"), described)
	eventually(t, "no-op processed", func() bool {
		return h.xds.Status().Version == v2 && h.metric(t, "warden_xds_snapshots_published_total") == published
	})
	src.Set(srv("alpha"), described, srv("charlie"))
	cds3 := c.next(resource.ClusterType)
	if got := clusterNames(t, cds3); !slices.Contains(got, "mcp_charlie") {
		t.Fatalf("a response arrived between the no-op and the next change: %v", got)
	}
	v3 := cds3.GetVersionInfo()
	if got := h.metric(t, "warden_xds_snapshots_published_total"); got != published+1 {
		t.Fatalf("published counter %v, want %v (the no-op must not publish)", got, published+1)
	}

	// Envoy accepts the v3 listener and routes but NACKs the v3 clusters:
	// Warden records it and returns the node to v2, the last version its
	// clusters accepted, so LDS and RDS come back at v2 too.
	c.ack(c.next(resource.ListenerType))
	c.ack(c.next(resource.RouteType), translate.RouteConfigName)
	c.nack(cds3, "cluster mcp_charlie: unknown field")
	lds4 := c.next(resource.ListenerType)
	rds4 := c.next(resource.RouteType)
	if lds4.GetVersionInfo() != v2 || rds4.GetVersionInfo() != v2 {
		t.Fatalf("after NACK the node got %s/%s, want the last good %s", lds4.GetVersionInfo(), rds4.GetVersionInfo(), v2)
	}
	c.ack(lds4)
	c.ack(rds4, translate.RouteConfigName)
	if got := h.metric(t, "warden_xds_nacks_total", "type", "Cluster"); got != 1 {
		t.Fatalf("nacks_total{type=Cluster} = %v", got)
	}
	st := h.xds.Status()
	if st.NACKs != 1 || st.LastNACK == nil || st.LastNACK.Version != v3 || st.LastNACK.RolledBackTo != v2 ||
		!strings.Contains(st.LastNACK.Reason, "unknown field") || st.LastNACK.TypeURL != resource.ClusterType {
		t.Fatalf("status after NACK: %+v %+v", st, st.LastNACK)
	}
	if len(st.Nodes) != 1 || len(st.Nodes[0].Streams) != 1 || st.Nodes[0].Streams[0].Version != v2 || st.Version != v3 {
		t.Fatalf("stream should be held at %s while %s is current: %+v", v2, v3, st.Nodes)
	}

	// The next change reaches the node again.
	src.Set(srv("alpha"), srv("charlie"))
	cds5 := c.next(resource.ClusterType)
	if cds5.GetVersionInfo() == v2 || cds5.GetVersionInfo() == v3 {
		t.Fatalf("expected a new version after the change, got %s", cds5.GetVersionInfo())
	}
	if got := clusterNames(t, cds5); slices.Contains(got, "mcp_bravo") || !slices.Contains(got, "mcp_charlie") {
		t.Fatalf("removal not applied: %v", got)
	}
}

func TestNACKOfFirstVersionDoesNotLoop(t *testing.T) {
	src := &memSource{servers: []store.Server{srv("alpha")}}
	h := start(t, src)
	eventually(t, "first publish", func() bool { return h.xds.Status().Ready })
	c := newADSClient(t, h.conn(t), "envoy-1")
	c.subscribe(resource.ClusterType)
	first := c.next(resource.ClusterType)
	c.nack(first, "rejected")
	// Were the refused version resent, it would arrive before this change's.
	src.Set(srv("alpha"), srv("bravo"))
	next := c.next(resource.ClusterType)
	if next.GetVersionInfo() == first.GetVersionInfo() {
		t.Fatal("the NACKed version was sent again")
	}
	if got := h.metric(t, "warden_xds_nacks_total", "type", "Cluster"); got != 1 {
		t.Fatalf("nacks_total = %v", got)
	}
}

func TestNodeIDsRestrictStreams(t *testing.T) {
	src := &memSource{servers: []store.Server{srv("alpha")}}
	h := start(t, src, "edge-a")
	eventually(t, "first publish", func() bool { return h.xds.Status().Ready })
	conn := h.conn(t)

	stranger := newADSClient(t, conn, "someone-else")
	stranger.subscribe(resource.ClusterType)
	_, err := stranger.stream.Recv()
	if grpcstatus.Code(err) != codes.PermissionDenied {
		t.Fatalf("unknown node: got %v, want PermissionDenied", err)
	}
	noID := newADSClient(t, conn, "")
	noID.subscribe(resource.ClusterType)
	if _, err := noID.stream.Recv(); grpcstatus.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty node id: got %v, want InvalidArgument", err)
	}
	ok := newADSClient(t, conn, "edge-a")
	cds, _, _ := ok.bootstrap()
	if len(cds.GetResources()) != 3 {
		t.Fatalf("configured node got %d clusters", len(cds.GetResources()))
	}
}

func TestNodeConnectingBeforeFirstPublishIsServed(t *testing.T) {
	src := &memSource{}
	src.Fail(errBoom)
	h := start(t, src)
	c := newADSClient(t, h.conn(t), "early")
	c.subscribe(resource.ClusterType)
	eventually(t, "failure recorded", func() bool { return strings.Contains(h.xds.Status().LastError, "store unavailable") })
	if h.xds.Status().Ready {
		t.Fatal("ready without a snapshot")
	}
	src.Set(srv("alpha")) // the retry or the signal publishes
	cds := c.next(resource.ClusterType)
	if got := clusterNames(t, cds); !slices.Contains(got, "mcp_alpha") {
		t.Fatalf("clusters %v", got)
	}
	if st := h.xds.Status(); !st.Ready || st.LastError != "" {
		t.Fatalf("status after recovery: %+v", st)
	}
}

func TestInvalidServersSkippedAndLastGoodKept(t *testing.T) {
	src := &memSource{servers: []store.Server{srv("alpha")}}
	h := start(t, src)
	eventually(t, "first publish", func() bool { return h.xds.Status().Ready })
	v1 := h.xds.Status().Version

	bad := store.Server{Name: "bad", URL: "https://user:pw@bad.example.com/"}
	// One bad server among good ones: the good ones publish, the bad one is
	// reported in status and metrics.
	src.Set(srv("alpha"), bad, srv("bravo"))
	eventually(t, "publish with skip", func() bool { return slices.Contains(h.xds.Status().Servers, "bravo") })
	st := h.xds.Status()
	if len(st.Skipped) != 1 || st.Skipped[0].Name != "bad" || strings.Contains(st.Skipped[0].Reason, "pw") {
		t.Fatalf("skipped %+v", st.Skipped)
	}
	if h.metric(t, "warden_xds_servers_skipped") != 1 || h.metric(t, "warden_xds_servers_published") != 2 {
		t.Fatal("skip metrics not set")
	}
	v2 := st.Version

	// Only bad servers: nothing publishable, the last good snapshot stays.
	src.Set(bad)
	eventually(t, "failure recorded", func() bool { return h.xds.Status().LastError != "" })
	if st := h.xds.Status(); st.Version != v2 || !slices.Equal(st.Servers, []string{"alpha", "bravo"}) {
		t.Fatalf("last good snapshot replaced: %+v", st)
	}
	if v1 == v2 {
		t.Fatal("versions should differ")
	}
	// An empty registry is a legitimate state, not a failure.
	src.Set()
	eventually(t, "empty publish", func() bool { st := h.xds.Status(); return st.LastError == "" && len(st.Servers) == 0 })
}

func TestDeltaADS(t *testing.T) {
	src := &memSource{servers: []store.Server{srv("alpha")}}
	h := start(t, src)
	eventually(t, "first publish", func() bool { return h.xds.Status().Ready })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := discovery.NewAggregatedDiscoveryServiceClient(h.conn(t)).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &core.Node{Id: "delta-envoy"}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	recv := func() *discovery.DeltaDiscoveryResponse {
		t.Helper()
		r, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	names := func(r *discovery.DeltaDiscoveryResponse) []string {
		var n []string
		for _, res := range r.GetResources() {
			n = append(n, res.GetName())
		}
		slices.Sort(n)
		return n
	}
	first := recv()
	if got := names(first); !slices.Equal(got, []string{"mcp_alpha", "warden_authz", "warden_http"}) {
		t.Fatalf("initial delta %v", got)
	}
	ack := func(r *discovery.DeltaDiscoveryResponse) {
		if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	ack(first)

	// Adding a server sends only its cluster.
	src.Set(srv("alpha"), srv("bravo"))
	added := recv()
	if got := names(added); !slices.Equal(got, []string{"mcp_bravo"}) {
		t.Fatalf("delta after add: %v (only the new cluster should be sent)", got)
	}
	ack(added)
	eventually(t, "delta ACK recorded", func() bool {
		s := h.xds.Status()
		return len(s.Nodes) == 1 && len(s.Nodes[0].Streams) == 1 && s.Nodes[0].Streams[0].Acked[resource.ClusterType] == s.Version
	})

	// Removing one sends its name in removed_resources.
	src.Set(srv("bravo"))
	removed := recv()
	if !slices.Equal(removed.GetRemovedResources(), []string{"mcp_alpha"}) || len(removed.GetResources()) != 0 {
		t.Fatalf("delta after removal: removed %v, resources %v", removed.GetRemovedResources(), names(removed))
	}

	// A delta NACK is recorded with the rejected version.
	rejected := h.xds.Status().Version
	if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: removed.GetNonce(),
		ErrorDetail: &status.Status{Code: 3, Message: "delta says no"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delta NACK recorded", func() bool { return h.xds.Status().NACKs == 1 })
	s := h.xds.Status()
	if s.LastNACK.Version != rejected || s.LastNACK.Reason != "delta says no" || s.LastNACK.Node != "delta-envoy" {
		t.Fatalf("delta NACK %+v", s.LastNACK)
	}
	// Rolled back to the version it ACKed: alpha's cluster comes back.
	back := recv()
	if got := names(back); !slices.Contains(got, "mcp_alpha") {
		t.Fatalf("after the NACK the node should get its last good clusters back, got %v removed %v", got, back.GetRemovedResources())
	}
	if h.metric(t, "warden_xds_nacks_total", "type", "Cluster") != 1 {
		t.Fatal("delta NACK not counted")
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	s := settings()
	s.WardenAuthzAddress = "nope"
	if _, err := New(Options{Source: &memSource{}, Settings: s}); err == nil {
		t.Fatal("bad settings accepted")
	}
	if _, err := New(Options{Settings: settings()}); err == nil {
		t.Fatal("missing source accepted")
	}
}

// Two Envoys share a node id. One NACKs: only its stream is rolled back;
// the other stays on the version it accepted and hears nothing until the
// next change (issue 13: a NACK carrying a node id rolled back every Envoy
// sharing it, so anyone who learnt the id could roll the fleet back).
func TestNACKRollsBackOnlyTheStreamThatSentIt(t *testing.T) {
	src := &memSource{servers: []store.Server{srv("alpha")}}
	h := start(t, src)
	eventually(t, "first publish", func() bool { return h.xds.Status().Ready })
	a := newADSClient(t, h.conn(t), "edge")
	b := newADSClient(t, h.conn(t), "edge")
	cds1, _, _ := a.bootstrap()
	b.bootstrap()
	v1 := cds1.GetVersionInfo()

	src.Set(srv("alpha"), srv("bravo"))
	for _, c := range []*adsClient{a, b} {
		cds := c.next(resource.ClusterType)
		if c == b {
			c.ack(cds)
		}
		c.ack(c.next(resource.ListenerType))
		c.ack(c.next(resource.RouteType), translate.RouteConfigName)
		if c == a {
			c.nack(cds, "cluster mcp_bravo: rejected by this Envoy")
		}
	}
	v2 := h.xds.Status().Version
	if v2 == v1 {
		t.Fatal("no new version")
	}
	// a goes back to v1 ...
	if l, r := a.next(resource.ListenerType), a.next(resource.RouteType); l.GetVersionInfo() != v1 || r.GetVersionInfo() != v1 {
		t.Fatalf("NACKing stream got %s/%s, want its last good %s", l.GetVersionInfo(), r.GetVersionInfo(), v1)
	}
	eventually(t, "rollback recorded", func() bool {
		st := h.xds.Status()
		return len(st.Nodes) == 1 && len(st.Nodes[0].Streams) == 2
	})
	st := h.xds.Status()
	versions := map[string]string{}
	for _, s := range st.Nodes[0].Streams {
		versions[s.ID] = s.Version
	}
	if st.LastNACK.RolledBackTo != v1 || versions[st.LastNACK.Stream] != v1 || len(versions) != 2 {
		t.Fatalf("status after NACK: last %+v, streams %v", st.LastNACK, versions)
	}
	for id, v := range versions {
		if id != st.LastNACK.Stream && v != v2 {
			t.Fatalf("the other stream %s was moved to %s; it accepted %s", id, v, v2)
		}
	}

	// ... and b hears nothing: the next thing it gets is the next change,
	// not the version a rolled back to.
	src.Set(srv("alpha"), srv("charlie"))
	cds3 := b.next(resource.ClusterType)
	l3 := b.next(resource.ListenerType)
	if cds3.GetVersionInfo() == v1 || l3.GetVersionInfo() == v1 {
		t.Fatalf("the stream that did not NACK was rolled back: got %s/%s (v1 %s)", cds3.GetVersionInfo(), l3.GetVersionInfo(), v1)
	}
	if got := clusterNames(t, cds3); !slices.Contains(got, "mcp_charlie") {
		t.Fatalf("clusters %v", got)
	}
	if cds := a.next(resource.ClusterType); !slices.Contains(clusterNames(t, cds), "mcp_charlie") {
		t.Fatal("the rolled-back stream did not get the next change")
	}
}
