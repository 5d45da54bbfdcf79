package translate

import (
	"cmp"
	"net"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcher "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/warden-mcp/warden/xds/ir"
)

// HTTPProtocolOptionsKey is the typed_extension_protocol_options key that
// selects the upstream HTTP version.
const HTTPProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// upstreamCluster is the shared shape of every cluster Warden publishes: one
// DNS-resolved host, an explicit HTTP version, optional TLS.
type upstreamCluster struct {
	name           string
	ep             ir.Endpoint
	http2          bool
	tls            bool
	caFile         string
	connectTimeout time.Duration
	// serverName is the name the upstream's certificate must carry and the
	// SNI; empty means ep.Host.
	serverName string
	// clientCert and clientKey, when set, are presented: mutual TLS.
	clientCert, clientKey string
}

func (u upstreamCluster) build() (*cluster.Cluster, error) {
	var proto *upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig
	if u.http2 {
		proto = &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
			Http2ProtocolOptions: &core.Http2ProtocolOptions{},
		}}
	} else {
		proto = &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{
			HttpProtocolOptions: &core.Http1ProtocolOptions{},
		}}
	}
	opts, err := pack(&upstreamhttp.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: proto},
	})
	if err != nil {
		return nil, err
	}
	c := &cluster.Cluster{
		Name: u.name,
		// STRICT_DNS re-resolves the name periodically (and accepts IP
		// literals), so an upstream that moves is followed without a push.
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS},
		DnsLookupFamily:      cluster.Cluster_V4_PREFERRED,
		ConnectTimeout:       durationpb.New(u.connectTimeout),
		LbPolicy:             cluster.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpoint.ClusterLoadAssignment{
			ClusterName: u.name,
			Endpoints: []*endpoint.LocalityLbEndpoints{{
				LbEndpoints: []*endpoint.LbEndpoint{{
					HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
						Address: socketAddress(u.ep.Host, u.ep.Port),
					}},
				}},
			}},
		},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{HTTPProtocolOptionsKey: opts},
	}
	if u.tls {
		ts, err := u.transportSocket()
		if err != nil {
			return nil, err
		}
		c.TransportSocket = ts
	}
	if err := c.ValidateAll(); err != nil {
		return nil, err
	}
	return c, nil
}

// transportSocket verifies the upstream against the CA bundle AND its name:
// Envoy checks only the chain unless a SAN matcher is given.
func (u upstreamCluster) transportSocket() (*core.TransportSocket, error) {
	name := cmp.Or(u.serverName, u.ep.Host)
	san := &tls.SubjectAltNameMatcher{
		SanType: tls.SubjectAltNameMatcher_DNS,
		Matcher: &matcher.StringMatcher{MatchPattern: &matcher.StringMatcher_Exact{Exact: name}},
	}
	sni := name
	if net.ParseIP(name) != nil {
		san.SanType = tls.SubjectAltNameMatcher_IP_ADDRESS
		sni = "" // SNI must be a host name (RFC 6066 section 3)
	}
	alpn := []string{"http/1.1"}
	if u.http2 {
		alpn = []string{"h2"}
	}
	common := &tls.CommonTlsContext{
		// Also what lets gRPC work: grpc-go refuses TLS clients that
		// negotiate no ALPN.
		AlpnProtocols: alpn,
		ValidationContextType: &tls.CommonTlsContext_ValidationContext{ValidationContext: &tls.CertificateValidationContext{
			TrustedCa:                 &core.DataSource{Specifier: &core.DataSource_Filename{Filename: u.caFile}},
			MatchTypedSubjectAltNames: []*tls.SubjectAltNameMatcher{san},
		}},
	}
	if u.clientCert != "" {
		common.TlsCertificates = []*tls.TlsCertificate{{
			CertificateChain: &core.DataSource{Specifier: &core.DataSource_Filename{Filename: u.clientCert}},
			PrivateKey:       &core.DataSource{Specifier: &core.DataSource_Filename{Filename: u.clientKey}},
		}}
	}
	ctx, err := pack(&tls.UpstreamTlsContext{Sni: sni, CommonTlsContext: common})
	if err != nil {
		return nil, err
	}
	return &core.TransportSocket{Name: wellknown.TransportSocketTLS, ConfigType: &core.TransportSocket_TypedConfig{TypedConfig: ctx}}, nil
}

func serverCluster(c ir.Config, s ir.Server) (*cluster.Cluster, error) {
	return upstreamCluster{
		name: ClusterName(s.Name), ep: s.Upstream, http2: s.HTTP2,
		tls: s.TLS, caFile: c.UpstreamCAFile, connectTimeout: s.ConnectTimeout,
	}.build()
}

// wardenClusters are Warden's own: ext_authz gRPC needs HTTP/2, and is
// mutual TLS when Warden's ext_authz listener is.
func wardenClusters(c ir.Config) ([]*cluster.Cluster, error) {
	ac := upstreamCluster{name: AuthzCluster, ep: c.Warden.Authz, http2: true, connectTimeout: c.Warden.ConnectTimeout}
	if t := c.Warden.AuthzTLS; t != nil {
		ac.tls, ac.caFile, ac.serverName, ac.clientCert, ac.clientKey = true, t.CAFile, t.ServerName, t.CertFile, t.KeyFile
	}
	authz, err := ac.build()
	if err != nil {
		return nil, err
	}
	httpC, err := upstreamCluster{name: HTTPCluster, ep: c.Warden.HTTP, connectTimeout: c.Warden.ConnectTimeout}.build()
	if err != nil {
		return nil, err
	}
	return []*cluster.Cluster{authz, httpC}, nil
}
