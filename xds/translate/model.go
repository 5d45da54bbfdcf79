package translate

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warden-mcp/warden/internal/serverspec"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/xds/ir"
)

// Settings are the deployment-wide inputs of the translation; cmd/warden
// fills them from the config file's xds and listen sections.
type Settings struct {
	ListenerAddress   string
	ListenerPort      uint32
	StreamIdleTimeout time.Duration
	// RouteIdleTimeout and ConnectTimeout apply to servers that set none.
	RouteIdleTimeout time.Duration
	// MaxStreamDuration ends MCP streams after this long (0: no limit) so
	// they are authorized again when the client reconnects.
	MaxStreamDuration time.Duration
	ConnectTimeout    time.Duration
	AuthzTimeout      time.Duration
	MaxRequestBytes   uint32
	// ExtProcTimeout is the ext_proc filter's message_timeout: how long
	// Envoy waits for the response path to answer one message (a list to
	// filter); DefaultExtProcTimeout when zero.
	ExtProcTimeout time.Duration
	// WardenAuthzAddress and WardenHTTPAddress are host:port.
	WardenAuthzAddress string
	WardenHTTPAddress  string
	// WardenAuthzTLS, when set, makes the warden_authz cluster mutual TLS.
	WardenAuthzTLS *ClientTLS
	UpstreamCAFile string
}

// DefaultExtProcTimeout is the ext_proc message_timeout when Settings
// names none: filtering a list may record tool pins and their audit
// events, which a store write bounds.
const DefaultExtProcTimeout = 2 * time.Second

// ClientTLS is how Envoy authenticates to one of Warden's listeners: the
// client certificate and key it presents and the CA it verifies Warden's
// certificate with, as paths where Envoy runs. ServerName is the name
// Warden's certificate must carry (and the SNI); empty uses the address's
// host.
type ClientTLS struct {
	CertFile   string
	KeyFile    string
	CAFile     string
	ServerName string
}

// ServerError tells why one server was left out of the published resources.
// Reason never contains the upstream URL: it may carry credentials.
type ServerError struct {
	Name string
	Err  error
}

func (e ServerError) Error() string { return fmt.Sprintf("server %q: %v", e.Name, e.Err) }
func (e ServerError) Unwrap() error { return e.Err }

// ErrTimeoutNegative is the stage 1 error for a negative server timeout.
// URL and name errors are package serverspec's, the same the registry
// refuses at registration.
var ErrTimeoutNegative = errors.New("timeouts must not be negative")

// BuildIR is stage 1: registry entries and settings to the intermediate
// model. Servers are sorted by name so that registry order never reaches
// Envoy. A server that cannot be modelled or fails ir validation is left out
// and reported; an error is returned only when the shared settings are
// invalid, which no single server can fix.
func BuildIR(servers []store.Server, s Settings) (ir.Config, []ServerError, error) {
	authz, err := parseHostPort(s.WardenAuthzAddress)
	if err != nil {
		return ir.Config{}, nil, fmt.Errorf("warden authz address: %w", err)
	}
	httpEP, err := parseHostPort(s.WardenHTTPAddress)
	if err != nil {
		return ir.Config{}, nil, fmt.Errorf("warden http address: %w", err)
	}
	c := ir.Config{
		Listener:       ir.Listener{Address: s.ListenerAddress, Port: s.ListenerPort, StreamIdleTimeout: s.StreamIdleTimeout},
		ExtAuthz:       ir.ExtAuthz{Timeout: s.AuthzTimeout, MaxRequestBytes: s.MaxRequestBytes},
		ExtProc:        ir.ExtProc{MessageTimeout: cmp.Or(s.ExtProcTimeout, DefaultExtProcTimeout)},
		Warden:         ir.Warden{Authz: authz, HTTP: httpEP, ConnectTimeout: s.ConnectTimeout},
		UpstreamCAFile: s.UpstreamCAFile,
	}
	if t := s.WardenAuthzTLS; t != nil {
		c.Warden.AuthzTLS = &ir.ClientTLS{CertFile: t.CertFile, KeyFile: t.KeyFile, CAFile: t.CAFile, ServerName: cmp.Or(strings.ToLower(t.ServerName), authz.Host)}
	}
	if err := c.ValidateShared(); err != nil {
		return ir.Config{}, nil, fmt.Errorf("xds settings: %w", err)
	}

	sorted := slices.Clone(servers)
	slices.SortFunc(sorted, func(a, b store.Server) int { return cmp.Compare(a.Name, b.Name) })
	var skipped []ServerError
	for i, srv := range sorted {
		if i > 0 && sorted[i-1].Name == srv.Name {
			skipped = append(skipped, ServerError{Name: srv.Name, Err: ir.ErrServerNameDuplicate})
			continue
		}
		m, err := serverIR(srv, s)
		if err == nil {
			err = m.Validate()
		}
		if err != nil {
			skipped = append(skipped, ServerError{Name: srv.Name, Err: err})
			continue
		}
		c.Servers = append(c.Servers, m)
	}
	return c, skipped, nil
}

func serverIR(srv store.Server, s Settings) (ir.Server, error) {
	u, err := serverspec.ParseURL(srv.URL)
	if err != nil {
		return ir.Server{}, err
	}
	if srv.ConnectTimeout < 0 || srv.IdleTimeout < 0 {
		return ir.Server{}, ErrTimeoutNegative
	}
	return ir.Server{
		Name:           srv.Name,
		Upstream:       ir.Endpoint{Host: u.Host, Port: u.Port},
		TLS:            u.TLS,
		Authority:      u.Authority,
		Path:           u.Path,
		HTTP2:          srv.HTTP2,
		ConnectTimeout: cmp.Or(srv.ConnectTimeout, s.ConnectTimeout),
		IdleTimeout:    cmp.Or(srv.IdleTimeout, s.RouteIdleTimeout),
		MaxStream:      s.MaxStreamDuration,
	}, nil
}

// parseHostPort parses host:port.
func parseHostPort(addr string) (ir.Endpoint, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ir.Endpoint{}, fmt.Errorf("%q: %w", addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 32)
	if err != nil || n == 0 || n > math.MaxUint16 {
		return ir.Endpoint{}, fmt.Errorf("%q: %w", addr, ir.ErrUpstreamPortInvalid)
	}
	return ir.Endpoint{Host: strings.ToLower(host), Port: uint32(n)}, nil
}
