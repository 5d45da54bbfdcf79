package xds

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// Status is what the admin API and /readyz show about the control plane.
type Status struct {
	// Ready is true once a snapshot was published: Envoy can be served.
	Ready       bool      `json:"ready"`
	Version     string    `json:"version,omitempty"`
	PublishedAt time.Time `json:"published_at,omitzero"`
	// Servers are the names of the published MCP servers.
	Servers []string `json:"servers"`
	// Skipped are registered servers left out, with the reason.
	Skipped []SkippedServer `json:"skipped,omitempty"`
	// LastError is the last failed publish, cleared by the next success.
	LastError string       `json:"last_error,omitempty"`
	NACKs     uint64       `json:"nacks"`
	LastNACK  *NACK        `json:"last_nack,omitempty"`
	Nodes     []NodeStatus `json:"nodes"`
}

// SkippedServer is a server the translation left out.
type SkippedServer struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// NodeStatus is one Envoy node id and its streams (several Envoys may
// share a node id).
type NodeStatus struct {
	ID       string         `json:"id"`
	Streams  []StreamStatus `json:"streams"`
	LastNACK *NACK          `json:"last_nack,omitempty"`
}

// StreamStatus is one ADS stream: one Envoy.
type StreamStatus struct {
	ID string `json:"id"`
	// Version is the snapshot set for the stream (older than
	// Status.Version after a NACK rolled it back).
	Version string `json:"version,omitempty"`
	// Acked is the last version the stream accepted, per type URL.
	Acked    map[string]string `json:"acked,omitempty"`
	LastNACK *NACK             `json:"last_nack,omitempty"`
}

// Status reports the current state. It is safe to call at any time.
func (s *Server) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Servers: []string{}, NACKs: s.nacks, Nodes: []NodeStatus{}}
	if s.current != nil {
		st.Ready = true
		st.Version = s.current.version
		st.PublishedAt = s.current.at
		st.Servers = slices.Clone(s.current.servers)
	}
	for _, e := range s.skipped {
		st.Skipped = append(st.Skipped, SkippedServer{Name: e.Name, Reason: e.Err.Error()})
	}
	if s.lastErr != nil {
		st.LastError = s.lastErr.Error()
	}
	st.LastNACK = copyNACK(s.lastNACK)
	streams := map[string][]StreamStatus{}
	keys := slices.SortedFunc(maps.Keys(s.streams), func(a, b streamKey) int {
		if a.delta != b.delta {
			return cmp.Compare(btoi(a.delta), btoi(b.delta))
		}
		return cmp.Compare(a.id, b.id)
	})
	for _, k := range keys {
		str := s.streams[k]
		if str.node == "" {
			continue
		}
		ss := StreamStatus{ID: k.String(), Acked: maps.Clone(str.acked), LastNACK: copyNACK(str.lastNACK)}
		if str.snap != nil {
			ss.Version = str.snap.GetVersion(typeListener)
		}
		streams[str.node] = append(streams[str.node], ss)
	}
	for _, id := range slices.Sorted(maps.Keys(s.nodes)) {
		n := s.nodes[id]
		st.Nodes = append(st.Nodes, NodeStatus{ID: id, Streams: append([]StreamStatus{}, streams[id]...), LastNACK: copyNACK(n.lastNACK)})
	}
	return st
}

func copyNACK(n *NACK) *NACK {
	if n == nil {
		return nil
	}
	c := *n
	return &c
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
