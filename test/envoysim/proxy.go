// Package envoysim is a test harness that behaves like Envoy where Warden
// depends on it: it takes its listeners, routes and clusters from an ADS
// server (or static configuration, like a bootstrap), ACKs and NACKs like
// Envoy, and serves HTTP/1.1 through the documented behaviour of the
// ext_authz HTTP filter and the router. It is test code: product code must
// never import it. README.md lists each behaviour, the Envoy documentation
// it follows, the test that covers it and what it does not do.
package envoysim

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// Options configure a Proxy.
type Options struct {
	// ADSAddress is the host:port of the ADS gRPC server (plaintext). Empty
	// means static configuration only.
	ADSAddress string
	// NodeID and NodeCluster identify the proxy to the control plane
	// (Node.id and Node.cluster). NodeID is required with ADSAddress.
	NodeID      string
	NodeCluster string
	// Listen is the address the proxy serves HTTP/1.1 on; the Listener's
	// own address is ignored. Default "127.0.0.1:0".
	Listen string
	// ListenerName selects the Listener to serve; empty means the first
	// by name.
	ListenerName string
	// StaticClusters and StaticListeners play the role of a bootstrap's
	// static_resources. CDS and LDS cannot replace them.
	StaticClusters  []*clusterv3.Cluster
	StaticListeners []*listenerv3.Listener
	// TLSRootCAs, when set, replaces the trusted CA of every upstream TLS
	// context (tests pass their own CA here).
	TLSRootCAs *x509.CertPool
	// DownstreamHeaders are set on every downstream request as if the
	// client had sent them, replacing the client's values. Not an Envoy
	// feature: it lets a client that cannot authenticate (the MCP
	// conformance runner) present a pre-issued handle.
	DownstreamHeaders http.Header
	// Logger receives the harness's logs; nil discards them.
	Logger *slog.Logger
}

// XDSResponse records one DiscoveryResponse the proxy answered, and how.
type XDSResponse struct {
	TypeURL   string
	Version   string   // the response's version_info
	Nonce     string   // the response's nonce
	Resources []string // names of the resources in the response
	Error     string   // the NACK's error_detail message; "" for an ACK
}

// Proxy is a running harness.
type Proxy struct {
	opts   Options
	log    *slog.Logger
	ln     net.Listener
	srv    *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup

	state  atomic.Pointer[state]
	static *state // compiled static resources

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	acks    []XDSResponse
	nacks   []XDSResponse
	retired []*cluster // replaced clusters, closed on Close

	adsConn *grpc.ClientConn

	checks atomic.Int64 // ext_authz Check calls that got an answer
	// hostRequests counts answered requests per cluster and host, as
	// Envoy's per-host upstream_rq_total on its /clusters admin page.
	hostMu       sync.Mutex
	hostRequests map[string]map[string]int64
	checkLog     []CheckRecord
	// ext_proc: Process streams opened, messages answered, failures.
	procStreams, procMessages, procFailures atomic.Int64
}

// Start compiles the static configuration, starts serving on opts.Listen
// and, with an ADS address, subscribes to LDS, RDS and CDS. The proxy runs
// until Close is called or ctx is done.
func Start(ctx context.Context, opts Options) (*Proxy, error) {
	if opts.ADSAddress != "" && opts.NodeID == "" {
		return nil, errors.New("envoysim: NodeID is required with ADSAddress")
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	p := &Proxy{opts: opts, log: opts.Logger, changed: make(chan struct{})}
	if p.log == nil {
		p.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}

	st := newState()
	for _, c := range opts.StaticClusters {
		cc, err := compileCluster(c, opts.TLSRootCAs)
		if err != nil {
			return nil, fmt.Errorf("envoysim: static cluster %q: %w", c.GetName(), err)
		}
		st.clusters[c.GetName()] = cc
	}
	for _, l := range opts.StaticListeners {
		cl, err := compileListener(l)
		if err != nil {
			return nil, fmt.Errorf("envoysim: static listener %q: %w", l.GetName(), err)
		}
		st.listeners[l.GetName()] = cl
	}
	p.static = st.clone()
	st.activate(opts.ListenerName)
	p.state.Store(st)

	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("envoysim: listen %s: %w", opts.Listen, err)
	}
	p.ln = ln
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}

	ctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	if opts.ADSAddress != "" {
		conn, err := grpc.NewClient(opts.ADSAddress,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			// Reconnect quickly after the control plane restarts, with
			// backoff, as Envoy's ADS mux does.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
				MinConnectTimeout: 5 * time.Second,
			}))
		if err != nil {
			cancel()
			_ = ln.Close()
			return nil, fmt.Errorf("envoysim: ADS client for %s: %w", opts.ADSAddress, err)
		}
		p.adsConn = conn
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.runADS(ctx)
		}()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("envoysim: serve", "err", err)
		}
	}()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		<-ctx.Done()
		_ = p.srv.Close()
	}()
	return p, nil
}

// URL is the base URL of the proxy, e.g. "http://127.0.0.1:41234".
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops serving, ends the ADS stream and closes upstream connections.
func (p *Proxy) Close() error {
	p.cancel()
	err := p.srv.Close()
	if p.adsConn != nil {
		_ = p.adsConn.Close()
	}
	p.wg.Wait()
	p.mu.Lock()
	retired := p.retired
	p.retired = nil
	p.mu.Unlock()
	for _, c := range retired {
		c.close()
	}
	for _, c := range p.state.Load().clusters {
		c.close()
	}
	return err
}

// Checks returns how many ext_authz Check calls the proxy made that the
// authorization service answered (allowed or denied), so a test can compare
// them with the decisions the service recorded. Not an Envoy feature (Envoy
// reports it as the ext_authz stats ok/denied/error).
func (p *Proxy) Checks() int64 { return p.checks.Load() }

// ExtProc counts ext_proc Process streams opened, messages answered and
// failed exchanges (unreachable, timeout, invalid answer).
func (p *Proxy) ExtProc() (streams, messages, failures int64) {
	return p.procStreams.Load(), p.procMessages.Load(), p.procFailures.Load()
}

// Config returns the configuration being served now.
func (p *Proxy) Config() *Config { return &Config{s: p.state.Load()} }

// Acks returns the responses the proxy ACKed, oldest first.
func (p *Proxy) Acks() []XDSResponse {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]XDSResponse(nil), p.acks...)
}

// Nacks returns the responses the proxy NACKed, oldest first.
func (p *Proxy) Nacks() []XDSResponse {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]XDSResponse(nil), p.nacks...)
}

// WaitForRoutes blocks until pred holds for the configuration being
// served, and returns that configuration.
func (p *Proxy) WaitForRoutes(ctx context.Context, pred func(*Config) bool) (*Config, error) {
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		c := p.Config()
		if pred(c) {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("envoysim: waiting for routes (listener %q, versions %v, nacks %v): %w",
				c.Listener(), c.s.versions, p.Nacks(), ctx.Err())
		case <-ch:
		}
	}
}

// WaitForVersion waits until LDS, CDS and (when subscribed) RDS were all
// ACKed at version and a listener is being served: the way to wait for a
// go-control-plane snapshot to be applied.
func (p *Proxy) WaitForVersion(ctx context.Context, version string) (*Config, error) {
	return p.WaitForRoutes(ctx, func(c *Config) bool {
		if c.Listener() == "" || c.Version(ListenerType) != version || c.Version(ClusterType) != version {
			return false
		}
		if len(c.s.rdsNames()) > 0 && c.Version(RouteType) != version {
			return false
		}
		return true
	})
}

// WaitForNack waits until a response of typeURL at version was NACKed and
// returns it.
func (p *Proxy) WaitForNack(ctx context.Context, typeURL, version string) (XDSResponse, error) {
	for {
		p.mu.Lock()
		ch := p.changed
		for _, n := range p.nacks {
			if n.TypeURL == typeURL && n.Version == version {
				p.mu.Unlock()
				return n, nil
			}
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return XDSResponse{}, fmt.Errorf("envoysim: waiting for a NACK of %s version %q: %w", typeURL, version, ctx.Err())
		case <-ch:
		}
	}
}

// publish installs a new state and wakes the waiters.
func (p *Proxy) publish(s *state) {
	p.state.Store(s)
	p.notify()
}

func (p *Proxy) notify() {
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *Proxy) record(r XDSResponse) {
	p.mu.Lock()
	if r.Error == "" {
		p.acks = append(p.acks, r)
	} else {
		p.nacks = append(p.nacks, r)
	}
	p.mu.Unlock()
	p.notify()
}

func (p *Proxy) retire(c *cluster) {
	p.mu.Lock()
	p.retired = append(p.retired, c)
	p.mu.Unlock()
	c.transport.CloseIdleConnections()
}

func (p *Proxy) countHost(cluster, addr string) {
	p.hostMu.Lock()
	defer p.hostMu.Unlock()
	if p.hostRequests == nil {
		p.hostRequests = map[string]map[string]int64{}
	}
	if p.hostRequests[cluster] == nil {
		p.hostRequests[cluster] = map[string]int64{}
	}
	p.hostRequests[cluster][addr]++
}

// HostRequests returns, for one cluster, how many requests each host
// (host:port) answered: HTTP responses received from it, gRPC calls it
// answered. Envoy reports the same as the per-host rq_total of its
// /clusters admin endpoint.
func (p *Proxy) HostRequests(cluster string) map[string]int64 {
	p.hostMu.Lock()
	defer p.hostMu.Unlock()
	out := map[string]int64{}
	for k, v := range p.hostRequests[cluster] {
		out[k] = v
	}
	return out
}

// CheckRecord is one ext_authz Check the proxy made: which host of the
// ext_authz cluster it went to and how it ended. Not an Envoy feature
// (Envoy's per-host stats count the same without the request id); it lets
// a test attribute each downstream request to the replica that decided it.
type CheckRecord struct {
	RequestID string // the request's x-request-id (Envoy's own on edge requests)
	Path      string // the request's :path, query included
	Host      string // host:port of the ext_authz endpoint
	Start     time.Time
	Allowed   bool   // an OK CheckResponse
	Err       string // the call failed (status_on_error applied); "" otherwise
}

func (p *Proxy) recordCheck(r CheckRecord) {
	p.hostMu.Lock()
	p.checkLog = append(p.checkLog, r)
	p.hostMu.Unlock()
}

// CheckLog returns every ext_authz Check made so far, oldest first.
func (p *Proxy) CheckLog() []CheckRecord {
	p.hostMu.Lock()
	defer p.hostMu.Unlock()
	return append([]CheckRecord(nil), p.checkLog...)
}
