// Package xds is Warden's Envoy control plane: it watches the server
// registry, translates it (package translate) into Envoy listeners, routes
// and clusters, and serves them over ADS (state of the world and delta) from
// go-control-plane's snapshot cache. It detects NACKs, counts and logs them,
// and keeps the stream that rejected a version on the last version that
// stream accepted.
//
// The cache is keyed by stream, not by node id: several Envoys may share a
// node id (replicas), and a NACK from one of them, or from anyone who
// learnt the id, must not roll the others back.
package xds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	gcplog "github.com/envoyproxy/go-control-plane/pkg/log"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/xds/ir"
	"github.com/warden-mcp/warden/xds/translate"
)

// Source is the server registry as the control plane needs it.
// internal/registry's *Registry satisfies it.
type Source interface {
	List(ctx context.Context) ([]store.Server, error)
	// Subscribe returns a coalesced "something changed" signal.
	Subscribe() (ch <-chan struct{}, cancel func())
}

// Options configure a Server.
type Options struct {
	Source   Source
	Settings translate.Settings
	// NodeIDs, when set, are the only Envoy node ids served; others are
	// refused. Empty serves any node id.
	NodeIDs    []string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
	// RetryInterval is how long to wait before retrying after the registry
	// could not be read or translated. Default 5s.
	RetryInterval time.Duration
}

// historySize bounds the snapshots kept for rolling a stream back after a
// NACK: a stream that rejected a version returns to the one it last accepted,
// which is almost always one of the last few.
const historySize = 8

// Server publishes the registry to Envoy over ADS.
type Server struct {
	src      Source
	settings translate.Settings
	// translator memoizes per-server output between publishes.
	translator *translate.Translator
	log        *slog.Logger
	now        func() time.Time
	retry      time.Duration
	metrics    *metrics
	cache      cache.SnapshotCache
	xds        serverv3.Server
	ctx        context.Context // lifetime of streams and cache responses
	stop       context.CancelFunc
	allowed    map[string]bool // nil: any node

	// onPublish, when set (tests, benchmarks), is called after a snapshot
	// was set for every stream.
	onPublish func(version string)

	mu      sync.Mutex
	current *published
	lastIR  *ir.Config
	// buildSkipped are the servers stage 2 skipped for lastIR.
	buildSkipped []translate.ServerError
	history      []*published
	skipped      []translate.ServerError
	lastErr      error
	nodes        map[string]*node
	streams      map[streamKey]*stream
	nacks        uint64
	lastNACK     *NACK
}

type published struct {
	snap    *cache.Snapshot
	version string
	servers []string
	at      time.Time
}

// node is one Envoy node id; several Envoys may share it (replicas), each
// on its own stream.
type node struct {
	id       string
	streams  int
	lastNACK *NACK
}

type streamKey struct {
	delta bool
	id    int64
}

// String names the stream in logs, status and as its cache key.
func (k streamKey) String() string {
	if k.delta {
		return fmt.Sprintf("delta-%d", k.id)
	}
	return fmt.Sprintf("sotw-%d", k.id)
}

// stream is one ADS stream: one Envoy.
type stream struct {
	node string
	// cacheNode is the node the snapshot cache sees for this stream: the
	// Envoy's node with the stream's own key as id.
	cacheNode *core.Node
	snap      *cache.Snapshot // what the cache holds for this stream
	acked     map[string]string
	lastNACK  *NACK
	// sent is, per type URL, the nonce and version of the last response,
	// to name the version a NACK rejects.
	sent map[string]sentResponse
}

type sentResponse struct{ nonce, version string }

// New builds a Server. Call Register on a grpc.Server, then Run.
func New(o Options) (*Server, error) {
	if o.Source == nil {
		return nil, errors.New("xds: Options.Source is required")
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = 5 * time.Second
	}
	// Fail at start, not at the first publish, on settings no server can fix.
	if _, _, err := translate.BuildIR(nil, o.Settings); err != nil {
		return nil, fmt.Errorf("xds: %w", err)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("xds: %w", err)
	}
	log := o.Logger.With("component", "xds")
	s := &Server{
		src: o.Source, settings: o.Settings, translator: translate.NewTranslator(), log: log, now: o.Now, retry: o.RetryInterval, metrics: m,
		nodes: map[string]*node{}, streams: map[streamKey]*stream{},
	}
	if len(o.NodeIDs) > 0 {
		s.allowed = map[string]bool{}
		for _, id := range o.NodeIDs {
			s.allowed[id] = true
			s.nodes[id] = &node{id: id}
		}
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	// ADS mode: a response waits until every resource of the type is
	// requested, so Envoy never sees a listener before its route config.
	s.cache = cache.NewSnapshotCache(true, cache.IDHash{}, gcpLogger{log})
	s.xds = serverv3.NewServer(s.ctx, s.cache, callbacks{s})
	return s, nil
}

// Register adds the Aggregated Discovery Service (state of the world and
// delta) to g.
func (s *Server) Register(g *grpc.Server) {
	discovery.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
}

// CheckServer reports whether srv would be published, and why not. The
// admin API can use it to answer a registration.
func (s *Server) CheckServer(srv store.Server) error {
	return translate.CheckServer(srv, s.settings)
}

// Run publishes the registry now and on every change until ctx is done.
// Failures keep the last good snapshot and are retried.
func (s *Server) Run(ctx context.Context) error {
	changes, cancel := s.src.Subscribe()
	defer cancel()
	defer s.stop()
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changes:
			if !ok {
				return errors.New("xds: registry subscription closed")
			}
		case <-retry.C:
		}
		if err := s.publish(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var p permanent
			if errors.As(err, &p) {
				// The same registry would fail the same way: wait for a change.
				s.log.Error("xDS publish failed; keeping the last good snapshot", "error", err)
				continue
			}
			s.log.Error("xDS publish failed; keeping the last good snapshot", "error", err, "retry_in", s.retry)
			retry.Reset(s.retry)
		} else {
			retry.Stop()
		}
	}
}

// publish translates the registry and sets the snapshot for every stream.
func (s *Server) publish(ctx context.Context) error {
	start := s.now()
	servers, err := s.src.List(ctx)
	if err != nil {
		return s.fail(fmt.Errorf("list servers: %w", err))
	}
	c, skipped, err := translate.BuildIR(servers, s.settings)
	if err != nil {
		return s.fail(permanent{err})
	}
	s.mu.Lock()
	if s.lastErr == nil && s.lastIR != nil && s.lastIR.Equal(c) {
		// Same intent as what is published, so stage 2 would give the same
		// resources; only the set of skipped entries may have changed.
		s.reportSkipped(sortSkipped(append(skipped, s.buildSkipped...)))
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	res, buildSkipped, err := s.translator.Build(c)
	if err != nil {
		return s.fail(permanent{err})
	}
	s.metrics.translate.Observe(s.now().Sub(start).Seconds())

	s.mu.Lock()
	defer s.mu.Unlock()
	s.reportSkipped(sortSkipped(append(skipped, buildSkipped...)))
	if len(servers) > 0 && len(res.Servers) == 0 && s.current != nil {
		return s.failLocked(permanent{fmt.Errorf("none of the %d registered servers could be translated", len(servers))})
	}
	s.lastErr = nil
	s.lastIR = &c
	s.buildSkipped = buildSkipped
	if s.current != nil && s.current.version == res.Version {
		return nil
	}
	snap, err := cache.NewSnapshot(res.Version, res.ByType())
	if err != nil {
		return s.failLocked(permanent{fmt.Errorf("snapshot: %w", err)})
	}
	if err := snap.Consistent(); err != nil {
		return s.failLocked(permanent{fmt.Errorf("snapshot %s is not consistent: %w", res.Version, err)})
	}
	p := &published{snap: snap, version: res.Version, servers: res.Servers, at: s.now()}
	s.current = p
	s.history = append(s.history, p)
	if len(s.history) > historySize {
		s.history = s.history[len(s.history)-historySize:]
	}
	for k, st := range s.streams {
		if st.node == "" {
			continue // attach sets it on the stream's first request
		}
		if err := s.setStream(k, st, snap); err != nil {
			s.log.Error("set snapshot", "node", st.node, "stream", k.String(), "version", res.Version, "error", err)
		}
	}
	s.metrics.published.Inc()
	s.metrics.servers.Set(float64(len(res.Servers)))
	s.log.Info("published xDS snapshot", "version", res.Version, "servers", len(res.Servers),
		"skipped", len(s.skipped), "nodes", len(s.nodes), "streams", len(s.streams), "took", s.now().Sub(start))
	if s.onPublish != nil {
		s.onPublish(res.Version)
	}
	return nil
}

func (s *Server) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failLocked(err)
}

func (s *Server) failLocked(err error) error {
	s.lastErr = err
	s.metrics.failures.Inc()
	return err
}

// reportSkipped logs servers whose skip is new or whose reason changed, so a
// bad entry is reported once, not on every publish.
func (s *Server) reportSkipped(skipped []translate.ServerError) {
	before := map[string]string{}
	for _, e := range s.skipped {
		before[e.Name] = e.Err.Error()
	}
	for _, e := range skipped {
		if before[e.Name] != e.Err.Error() {
			s.log.Warn("MCP server not published to Envoy", "server", e.Name, "reason", e.Err.Error())
		}
	}
	s.skipped = skipped
	s.metrics.skipped.Set(float64(len(skipped)))
}

// setStream sets snap for one stream in the cache. Must hold s.mu.
func (s *Server) setStream(k streamKey, st *stream, snap *cache.Snapshot) error {
	if err := s.cache.SetSnapshot(s.ctx, k.String(), snap); err != nil {
		return err
	}
	st.snap = snap
	return nil
}

func (s *Server) snapshotByVersion(v string) *cache.Snapshot {
	for i := len(s.history) - 1; i >= 0; i-- {
		if s.history[i].version == v {
			return s.history[i].snap
		}
	}
	return nil
}

// permanent marks a failure that retrying the same registry cannot fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

func sortSkipped(s []translate.ServerError) []translate.ServerError {
	slices.SortStableFunc(s, func(a, b translate.ServerError) int { return cmp.Compare(a.Name, b.Name) })
	return s
}

// gcpLogger routes go-control-plane's logs into slog. Its Info level is
// per-watch chatter, so it goes to Debug.
type gcpLogger struct{ l *slog.Logger }

var _ gcplog.Logger = gcpLogger{}

func (g gcpLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gcpLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gcpLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...)) }
func (g gcpLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
