package envoysim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

const (
	tlsTransportSocket    = "envoy.transport_sockets.tls"
	httpProtocolOptsKey   = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	defaultConnectTimeout = 5 * time.Second // Cluster.connect_timeout default
)

var (
	upstreamTLSTypeURL   = typeURLOf(&tlsv3.UpstreamTlsContext{})
	httpProtocolsTypeURL = typeURLOf(&httpv3.HttpProtocolOptions{})
)

// endpoint is one host of a cluster.
type endpoint struct {
	addr     string // host:port to dial
	hostname string // used by auto_host_rewrite
}

// cluster is a compiled Cluster with its connection pool.
type cluster struct {
	name           string
	src            *clusterv3.Cluster
	hosts          []*host
	weighted       bool // some load_balancing_weight differs from the others
	panicThreshold float64
	outlier        *outlierDetection // nil: no outlier detection
	connectTimeout time.Duration
	http2          bool

	tls     *tls.Config // nil for plaintext
	sni     string
	autoSNI bool

	next      atomic.Uint64
	wrrMu     sync.Mutex
	ejectMu   sync.Mutex
	transport *http.Transport
}

// compileCluster turns a Cluster into something the router can send to.
// roots, when non-nil, replaces the validation context's trusted CA (tests
// use it for their own CA).
func compileCluster(c *clusterv3.Cluster, roots *x509.CertPool) (*cluster, error) {
	if err := validate(c); err != nil {
		return nil, err
	}
	out := &cluster{
		name:           c.GetName(),
		src:            c,
		connectTimeout: durationOr(c.GetConnectTimeout(), defaultConnectTimeout),
	}
	dnsType := false
	switch t := c.GetClusterDiscoveryType().(type) {
	case nil:
		// STATIC is the zero value of the type oneof's enum.
	case *clusterv3.Cluster_Type:
		switch t.Type {
		case clusterv3.Cluster_STATIC:
		case clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
			dnsType = true
		default:
			return nil, fmt.Errorf("cluster type %s is not supported by envoysim", t.Type)
		}
	default:
		return nil, fmt.Errorf("cluster discovery type %T is not supported by envoysim", t)
	}
	// ROUND_ROBIN is the zero value; Envoy's other policies are not modelled.
	if c.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN || c.GetLoadBalancingPolicy() != nil {
		return nil, fmt.Errorf("lb_policy %s is not supported by envoysim (only ROUND_ROBIN)", c.GetLbPolicy())
	}
	if len(c.GetHealthChecks()) > 0 {
		return nil, errors.New("active health_checks are not supported by envoysim")
	}
	hosts, err := compileHosts(c, dnsType)
	if err != nil {
		return nil, err
	}
	out.hosts = hosts
	for _, h := range hosts {
		if h.weight != hosts[0].weight {
			out.weighted = true
		}
	}
	out.panicThreshold = defaultPanicThreshold
	if pt := c.GetCommonLbConfig().GetHealthyPanicThreshold(); pt != nil {
		out.panicThreshold = pt.GetValue()
	}
	if out.outlier, err = compileOutlier(c.GetOutlierDetection(), len(hosts)); err != nil {
		return nil, err
	}

	//lint:ignore SA1019 the deprecated field is still honoured by Envoy
	if c.GetHttp2ProtocolOptions() != nil {
		out.http2 = true
	}
	alpnAuto := false
	if a, ok := c.GetTypedExtensionProtocolOptions()[httpProtocolOptsKey]; ok {
		if a.GetTypeUrl() != httpProtocolsTypeURL {
			return nil, fmt.Errorf("typed_extension_protocol_options[%s] has type %s", httpProtocolOptsKey, a.GetTypeUrl())
		}
		po := &httpv3.HttpProtocolOptions{}
		if err := unpack(a, po); err != nil {
			return nil, err
		}
		switch p := po.GetUpstreamProtocolOptions().(type) {
		case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_:
			switch p.ExplicitHttpConfig.GetProtocolConfig().(type) {
			case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions:
				out.http2 = true
			case *httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http3ProtocolOptions:
				return nil, errors.New("HTTP/3 upstreams are not supported by envoysim")
			}
		case *httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig:
			// Downstream is always HTTP/1.1 here.
		case *httpv3.HttpProtocolOptions_AutoConfig:
			alpnAuto = true
		}
		out.autoSNI = po.GetUpstreamHttpProtocolOptions().GetAutoSni()
	}

	if ts := c.GetTransportSocket(); ts != nil {
		if ts.GetName() != tlsTransportSocket && ts.GetTypedConfig().GetTypeUrl() != upstreamTLSTypeURL {
			return nil, fmt.Errorf("transport socket %q is not supported by envoysim", ts.GetName())
		}
		utc := &tlsv3.UpstreamTlsContext{}
		if err := unpack(ts.GetTypedConfig(), utc); err != nil {
			return nil, err
		}
		if err := out.compileTLS(utc, roots, alpnAuto); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	if len(c.GetTransportSocketMatches()) > 0 {
		return nil, errors.New("transport_socket_matches is not supported by envoysim")
	}
	out.transport = out.newTransport()
	return out, nil
}

func (c *cluster) compileTLS(utc *tlsv3.UpstreamTlsContext, override *x509.CertPool, alpnAuto bool) error {
	ctx := utc.GetCommonTlsContext()
	cfg := &tls.Config{
		// Verification is done in VerifyConnection below, as Envoy does it:
		// chain validation only when a validation context is configured,
		// and a SAN check only when SAN matchers are configured.
		InsecureSkipVerify: true, //nolint:gosec // see VerifyConnection
		MinVersion:         tls.VersionTLS12,
		NextProtos:         ctx.GetAlpnProtocols(),
	}
	if p := ctx.GetTlsParams(); p != nil {
		cfg.MinVersion = tlsVersion(p.GetTlsMinimumProtocolVersion(), tls.VersionTLS12)
		cfg.MaxVersion = tlsVersion(p.GetTlsMaximumProtocolVersion(), 0)
	}
	if len(cfg.NextProtos) == 0 {
		switch {
		case alpnAuto:
			cfg.NextProtos = []string{"h2", "http/1.1"}
		case c.http2:
			// Go's HTTP/2 server only speaks h2 over TLS after ALPN.
			cfg.NextProtos = []string{"h2"}
		}
	}
	if alpnAuto && !c.http2 {
		c.http2 = true // chosen by ALPN; the transport falls back to HTTP/1.1
	}
	for _, tc := range ctx.GetTlsCertificates() {
		certPEM, err := readDataSource(tc.GetCertificateChain())
		if err != nil {
			return err
		}
		keyPEM, err := readDataSource(tc.GetPrivateKey())
		if err != nil {
			return err
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = append(cfg.Certificates, pair)
	}
	if len(ctx.GetTlsCertificateSdsSecretConfigs()) > 0 {
		return errors.New("SDS secrets are not supported by envoysim")
	}

	var roots *x509.CertPool
	var sans []*tlsv3.SubjectAltNameMatcher
	switch v := ctx.GetValidationContextType().(type) {
	case nil:
	case *tlsv3.CommonTlsContext_ValidationContext:
		vc := v.ValidationContext
		sans = vc.GetMatchTypedSubjectAltNames()
		switch {
		case vc.GetTrustedCa() != nil:
			pem, err := readDataSource(vc.GetTrustedCa())
			if err != nil {
				return fmt.Errorf("trusted_ca: %w", err)
			}
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return errors.New("trusted_ca: no certificate found")
			}
		case vc.GetSystemRootCerts() != nil:
			sys, err := x509.SystemCertPool()
			if err != nil {
				return fmt.Errorf("system_root_certs: %w", err)
			}
			roots = sys
		}
	default:
		return fmt.Errorf("validation context %T is not supported by envoysim", v)
	}
	if override != nil {
		roots = override
	}
	var sanMatchers []func(*x509.Certificate) bool
	for _, s := range sans {
		sm, err := compileStringMatcher(s.GetMatcher())
		if err != nil {
			return err
		}
		typ := s.GetSanType()
		sanMatchers = append(sanMatchers, func(cert *x509.Certificate) bool {
			var vals []string
			switch typ {
			case tlsv3.SubjectAltNameMatcher_DNS:
				vals = cert.DNSNames
			case tlsv3.SubjectAltNameMatcher_URI:
				for _, u := range cert.URIs {
					vals = append(vals, u.String())
				}
			case tlsv3.SubjectAltNameMatcher_EMAIL:
				vals = cert.EmailAddresses
			case tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
				for _, ip := range cert.IPAddresses {
					vals = append(vals, ip.String())
				}
			}
			for _, v := range vals {
				if sm.match(v) {
					return true
				}
			}
			return false
		})
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if roots == nil {
			return nil // no validation context: Envoy accepts any server certificate
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("upstream presented no certificate")
		}
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
			return err
		}
		if len(sanMatchers) == 0 {
			return nil
		}
		for _, m := range sanMatchers {
			if m(cs.PeerCertificates[0]) {
				return nil
			}
		}
		return errors.New("no subject alternative name matched")
	}
	c.tls = cfg
	c.sni = utc.GetSni()
	if utc.GetAutoHostSni() {
		c.autoSNI = true
	}
	return nil
}

func tlsVersion(v tlsv3.TlsParameters_TlsProtocol, def uint16) uint16 {
	switch v {
	case tlsv3.TlsParameters_TLSv1_0:
		return tls.VersionTLS10
	case tlsv3.TlsParameters_TLSv1_1:
		return tls.VersionTLS11
	case tlsv3.TlsParameters_TLSv1_2:
		return tls.VersionTLS12
	case tlsv3.TlsParameters_TLSv1_3:
		return tls.VersionTLS13
	}
	return def
}

type sniKey struct{}

// newTransport builds the connection pool of the cluster: HTTP/1.1, h2c
// with prior knowledge, or TLS (h2 via ALPN when configured).
func (c *cluster) newTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: c.connectTimeout}
	t := &http.Transport{
		Proxy:               nil, // never an environment proxy: Envoy dials the endpoint
		DialContext:         dialer.DialContext,
		DisableCompression:  true, // Envoy forwards bodies untouched
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     time.Hour,
	}
	p := new(http.Protocols)
	switch {
	case c.tls != nil:
		t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			cfg := c.tls.Clone()
			cfg.ServerName = c.sni
			if s, ok := ctx.Value(sniKey{}).(string); ok && s != "" && c.sni == "" {
				cfg.ServerName = s
			}
			tc := tls.Client(raw, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				_ = raw.Close()
				return nil, fmt.Errorf("TLS error: %w", err)
			}
			return tc, nil
		}
		p.SetHTTP1(true)
		if c.http2 {
			p.SetHTTP2(true)
			t.ForceAttemptHTTP2 = true
		}
	case c.http2:
		p.SetUnencryptedHTTP2(true)
	default:
		p.SetHTTP1(true)
	}
	t.Protocols = p
	return t
}

func (c *cluster) scheme() string {
	if c.tls != nil {
		return "https"
	}
	return "http"
}

// grpcClient returns the connection Envoy's envoy_grpc client would use
// to one host of this cluster (HTTP/2, plaintext or TLS per the cluster).
// Envoy's async client picks a host for every call through the cluster's
// load balancer, so every host has its own connection.
func (c *cluster) grpcClient(h *host, authority string) (*grpc.ClientConn, error) {
	h.grpcOnce.Do(func() {
		creds := insecure.NewCredentials()
		if c.tls != nil {
			cfg := c.tls.Clone()
			cfg.ServerName = c.sni
			cfg.NextProtos = []string{"h2"}
			creds = credentials.NewTLS(cfg)
		}
		dialer := &net.Dialer{Timeout: c.connectTimeout}
		opts := []grpc.DialOption{
			grpc.WithTransportCredentials(creds),
			// Reconnect soon after the authz service comes back; until then
			// calls fail fast and status_on_error applies.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
				MinConnectTimeout: c.connectTimeout,
			}),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
				return dialer.DialContext(ctx, "tcp", addr)
			}),
		}
		if authority == "" {
			authority = c.name // envoy_grpc sends the cluster name as :authority by default
		}
		opts = append(opts, grpc.WithAuthority(authority))
		h.grpcConn, h.grpcErr = grpc.NewClient("passthrough:///"+h.addr, opts...)
	})
	return h.grpcConn, h.grpcErr
}

func (c *cluster) close() {
	c.transport.CloseIdleConnections()
	for _, h := range c.hosts {
		if h.grpcConn != nil {
			_ = h.grpcConn.Close()
		}
	}
}

// connectFailure renders an upstream connection error the way Envoy's
// router words its 503 local reply.
func connectFailure(err error) string {
	reason := "remote connection failure"
	detail := err.Error()
	if strings.Contains(detail, "TLS error") {
		reason = "connection failure"
	}
	return "upstream connect error or disconnect/reset before headers. reset reason: " + reason +
		", transport failure reason: " + detail
}
