package xds

import (
	"context"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// NACK is one rejection of a version by an Envoy.
type NACK struct {
	Node string `json:"node"`
	// Stream is the ADS stream (one Envoy) that sent it; only that stream
	// is rolled back.
	Stream  string    `json:"stream"`
	TypeURL string    `json:"type_url"`
	Version string    `json:"version"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
	// RolledBackTo is the version the stream was returned to, empty when
	// it had accepted none that is still known.
	RolledBackTo string `json:"rolled_back_to,omitempty"`
}

// callbacks hooks the go-control-plane server's stream events. They run on
// the stream's goroutine before the cache is asked for a watch, which is
// what lets OnStreamRequest set a snapshot for a stream seen for the first
// time, or roll a stream back, before its request is answered.
type callbacks struct{ s *Server }

var _ serverv3.Callbacks = callbacks{}

func (c callbacks) OnStreamOpen(_ context.Context, id int64, _ string) error {
	c.s.openStream(streamKey{id: id})
	return nil
}

func (c callbacks) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	c.s.openStream(streamKey{delta: true, id: id})
	return nil
}

func (c callbacks) OnStreamClosed(id int64, _ *core.Node) { c.s.closeStream(streamKey{id: id}) }

func (c callbacks) OnDeltaStreamClosed(id int64, _ *core.Node) {
	c.s.closeStream(streamKey{delta: true, id: id})
}

func (c callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	k := streamKey{id: id}
	if err := c.s.attach(k, req); err != nil {
		return err
	}
	if req.GetErrorDetail() != nil {
		good := req.GetVersionInfo() // SotW: the last version this type accepted
		if !c.s.nack(k, req.GetTypeUrl(), req.GetResponseNonce(), good, req.GetErrorDetail().GetMessage()) {
			// Nothing accepted to return to. Answering the request would
			// resend the version just refused, and Envoy would refuse it
			// again at once: mark it seen so the watch waits for the next
			// change instead.
			req.VersionInfo = c.s.streamVersion(k, req.GetTypeUrl())
		}
		return nil
	}
	if req.GetResponseNonce() != "" {
		c.s.ack(k, req.GetTypeUrl(), req.GetVersionInfo())
	}
	return nil
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.s.sent(streamKey{id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

func (c callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	k := streamKey{delta: true, id: id}
	if err := c.s.attach(k, req); err != nil {
		return err
	}
	if req.GetErrorDetail() != nil {
		// Delta requests carry no version: the stream's last ACK for the
		// type is where it stands.
		c.s.nack(k, req.GetTypeUrl(), req.GetResponseNonce(), "", req.GetErrorDetail().GetMessage())
		return nil
	}
	if nonce := req.GetResponseNonce(); nonce != "" {
		if v, ok := c.s.sentVersion(k, req.GetTypeUrl(), nonce); ok {
			c.s.ack(k, req.GetTypeUrl(), v)
		}
	}
	return nil
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.s.sent(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

func (callbacks) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "Warden serves xDS over ADS streams only")
}

func (callbacks) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

func (s *Server) openStream(k streamKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams[k] = &stream{acked: map[string]string{}, sent: map[string]sentResponse{}}
	s.metrics.streams.Inc()
}

func (s *Server) closeStream(k streamKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streams[k]
	if !ok {
		return
	}
	delete(s.streams, k)
	s.metrics.streams.Dec()
	s.cache.ClearSnapshot(k.String())
	n := s.nodes[st.node]
	if n == nil {
		return
	}
	n.streams--
	if n.streams == 0 && s.allowed == nil {
		// Any-node mode: forget a node when its last Envoy leaves, so
		// node ids that come and go do not accumulate.
		delete(s.nodes, n.id)
	}
}

// request is what attach needs of SotW and delta requests alike.
type request interface {
	GetNode() *core.Node
}

// attach binds a stream to its node on the first request, makes sure the
// stream has the current snapshot before the cache answers, and points the
// request at the stream's own cache entry (the cache reads the node id
// from the request).
func (s *Server) attach(k streamKey, req request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[k]
	if st == nil { // callbacks always open first; be safe anyway
		st = &stream{acked: map[string]string{}, sent: map[string]sentResponse{}}
		s.streams[k] = st
	}
	if st.node == "" {
		cn := req.GetNode()
		id := cn.GetId()
		if id == "" {
			return status.Error(codes.InvalidArgument, "node.id is required")
		}
		if s.allowed != nil && !s.allowed[id] {
			s.log.Warn("refused xDS stream from an unknown node", "node", id)
			return status.Errorf(codes.PermissionDenied, "node %q is not in xds.node_ids", id)
		}
		n := s.nodes[id]
		if n == nil {
			n = &node{id: id}
			s.nodes[id] = n
		}
		n.streams++
		st.node = id
		st.cacheNode = proto.Clone(cn).(*core.Node)
		st.cacheNode.Id = k.String()
		if s.current != nil {
			if err := s.setStream(k, st, s.current.snap); err != nil {
				return status.Errorf(codes.Internal, "set snapshot: %v", err)
			}
		}
		s.log.Info("Envoy connected", "node", id, "cluster", cn.GetCluster(), "stream", k.String())
	}
	switch r := req.(type) {
	case *discovery.DiscoveryRequest:
		r.Node = st.cacheNode
	case *discovery.DeltaDiscoveryRequest:
		r.Node = st.cacheNode
	}
	return nil
}

func (s *Server) sent(k streamKey, typeURL, nonce, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[k]; st != nil {
		st.sent[typeURL] = sentResponse{nonce: nonce, version: version}
	}
}

func (s *Server) sentVersion(k streamKey, typeURL, nonce string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[k]; st != nil {
		if r, ok := st.sent[typeURL]; ok && r.nonce == nonce {
			return r.version, true
		}
	}
	return "", false
}

func (s *Server) ack(k streamKey, typeURL, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[k]; st != nil {
		st.acked[typeURL] = version
	}
}

func (s *Server) streamVersion(k streamKey, typeURL string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[k]; st != nil && st.snap != nil {
		return st.snap.GetVersion(typeURL)
	}
	return ""
}

// nack records a rejection and, when the stream still holds the rejected
// version and accepted an earlier one that is kept, sets that earlier
// snapshot for this stream only: it stays on its last good config until the
// registry changes, while other streams, of the same node id or not, keep
// what they have. It reports whether the stream was rolled back or already
// moved on.
func (s *Server) nack(k streamKey, typeURL, nonce, good, reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[k]
	if st == nil {
		return false
	}
	rejected := ""
	if r, ok := st.sent[typeURL]; ok && (nonce == "" || r.nonce == nonce) {
		rejected = r.version
	}
	if rejected == "" && st.snap != nil {
		rejected = st.snap.GetVersion(typeURL)
	}
	if good == "" {
		good = st.acked[typeURL]
	}
	rec := &NACK{Node: st.node, Stream: k.String(), TypeURL: typeURL, Version: rejected, Reason: reason, At: s.now()}
	s.nacks++
	s.lastNACK, st.lastNACK = rec, rec
	if n := s.nodes[st.node]; n != nil {
		n.lastNACK = rec
	}
	s.metrics.nacks.WithLabelValues(shortType(typeURL)).Inc()
	log := s.log.With("node", st.node, "stream", k.String(), "type", typeURL, "version", rejected, "reason", reason)

	if st.snap == nil || st.snap.GetVersion(typeURL) != rejected {
		// The stream already has a newer snapshot queued; it will get that.
		log.Warn("Envoy rejected xDS config")
		return true
	}
	if prev := s.snapshotByVersion(good); prev != nil && good != rejected {
		if err := s.setStream(k, st, prev); err != nil {
			log.Error("roll back after NACK", "kept", good, "error", err)
			return false
		}
		rec.RolledBackTo = good
		log.Warn("Envoy rejected xDS config; this stream is kept on its last accepted version", "kept", good)
		return true
	}
	log.Warn("Envoy rejected xDS config and accepted none before it")
	return false
}

// shortType is the metric label for a type URL: "Listener", "Cluster", ...
func shortType(typeURL string) string {
	if i := strings.LastIndexByte(typeURL, '.'); i >= 0 {
		return typeURL[i+1:]
	}
	return typeURL
}

// typeListener names a snapshot's version: all types share one.
const typeListener = resource.ListenerType
