// Package ir is the intermediate model between Warden's server registry and
// Envoy's resources: plain structs with no Envoy or store types. The registry
// is translated into an IR, the IR is validated, and only then is it turned
// into Envoy protobufs (package translate). Keeping Envoy out of this layer
// means a reader can see what Warden intends to publish without knowing the
// xDS API, and tests can compare intent with Equal.
package ir

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"time"

	"github.com/warden-mcp/warden/internal/serverspec"
)

// Sentinel errors, joined by Validate so every problem is reported at once.
var (
	ErrServerNameInvalid     = errors.New("server name must be lowercase letters, digits and dashes (1-63)")
	ErrServerNameDuplicate   = errors.New("server name is used twice")
	ErrUpstreamHostEmpty     = errors.New("upstream host is empty")
	ErrUpstreamHostInvalid   = errors.New("upstream host is not a valid DNS name or IP address")
	ErrUpstreamPortInvalid   = errors.New("upstream port must be 1-65535")
	ErrUpstreamPathInvalid   = errors.New("upstream path must start with / and contain no query, fragment or control characters")
	ErrTimeoutInvalid        = errors.New("timeout must be positive")
	ErrListenerAddressEmpty  = errors.New("listener address is not an IP address")
	ErrListenerPortInvalid   = errors.New("listener port must be 1-65535")
	ErrMaxRequestBytes       = errors.New("ext_authz max request bytes must be positive and fit in 32 bits")
	ErrWardenEndpointInvalid = errors.New("warden endpoint is invalid")
	ErrCAFileEmpty           = errors.New("upstream CA file is empty")
	ErrClientTLSIncomplete   = errors.New("mutual TLS needs a certificate, a key, a CA file and a server name")
)

// Config is everything Warden publishes to one Envoy.
type Config struct {
	Listener Listener
	ExtAuthz ExtAuthz
	ExtProc  ExtProc
	// Warden is where Envoy reaches Warden itself.
	Warden Warden
	// UpstreamCAFile is the CA bundle https upstreams are verified against.
	UpstreamCAFile string
	// Servers are sorted by Name.
	Servers []Server
}

// Listener is the one MCP listener.
type Listener struct {
	Address           string
	Port              uint32
	StreamIdleTimeout time.Duration
}

// ExtAuthz is the ext_authz filter's connection to Warden.
type ExtAuthz struct {
	Timeout         time.Duration
	MaxRequestBytes uint32
}

// ExtProc is the ext_proc filter's connection to Warden (the response
// path): how long Envoy waits for Warden's answer to one message.
type ExtProc struct {
	MessageTimeout time.Duration
}

// Warden holds Warden's own endpoints.
type Warden struct {
	Authz Endpoint // ext_authz gRPC (HTTP/2)
	// AuthzTLS, when set, is mutual TLS to the ext_authz listener.
	AuthzTLS       *ClientTLS
	HTTP           Endpoint // OAuth and discovery endpoints (HTTP/1.1)
	ConnectTimeout time.Duration
}

// ClientTLS is Envoy's side of a mutual TLS connection: the certificate and
// key it presents and the CA it verifies the server with (paths where
// Envoy runs), and the name the server's certificate must carry.
type ClientTLS struct {
	CertFile   string
	KeyFile    string
	CAFile     string
	ServerName string
}

// Endpoint is a DNS name or IP literal and a port.
type Endpoint struct {
	Host string
	Port uint32
}

// String renders host:port (IPv6 literals bracketed).
func (e Endpoint) String() string {
	return net.JoinHostPort(e.Host, fmt.Sprint(e.Port))
}

// Server is one registered MCP server as Envoy should route to it.
type Server struct {
	Name     string
	Upstream Endpoint
	// TLS selects https to the upstream, with SNI and SAN check on Upstream.Host.
	TLS bool
	// Authority is the Host header sent upstream: the URL's host[:port].
	Authority string
	// Path is the upstream URL path, "/" when the URL has none.
	Path           string
	HTTP2          bool
	ConnectTimeout time.Duration
	IdleTimeout    time.Duration
	// MaxStream ends a stream after this long; 0 means no limit.
	MaxStream time.Duration
}

// Validate reports every problem of the shared settings and of each server.
func (c Config) Validate() error {
	errs := []error{c.ValidateShared()}
	seen := map[string]bool{}
	for _, s := range c.Servers {
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("server %q: %w", s.Name, ErrServerNameDuplicate))
		}
		seen[s.Name] = true
		if err := s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("server %q: %w", s.Name, err))
		}
	}
	return errors.Join(errs...)
}

// ValidateShared checks the parts of Config that every server depends on;
// an error here fails the whole translation.
func (c Config) ValidateShared() error {
	var errs []error
	if net.ParseIP(c.Listener.Address) == nil {
		errs = append(errs, ErrListenerAddressEmpty)
	}
	if c.Listener.Port == 0 || c.Listener.Port > 65535 {
		errs = append(errs, ErrListenerPortInvalid)
	}
	if c.Listener.StreamIdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("stream idle: %w", ErrTimeoutInvalid))
	}
	if c.ExtAuthz.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("ext_authz: %w", ErrTimeoutInvalid))
	}
	if c.ExtProc.MessageTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ext_proc: %w", ErrTimeoutInvalid))
	}
	if c.ExtAuthz.MaxRequestBytes == 0 {
		errs = append(errs, ErrMaxRequestBytes)
	}
	if err := c.Warden.Authz.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("warden authz: %w: %w", ErrWardenEndpointInvalid, err))
	}
	if t := c.Warden.AuthzTLS; t != nil && (t.CertFile == "" || t.KeyFile == "" || t.CAFile == "" || !serverspec.ValidHost(t.ServerName)) {
		errs = append(errs, fmt.Errorf("warden authz tls: %w", ErrClientTLSIncomplete))
	}
	if err := c.Warden.HTTP.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("warden http: %w: %w", ErrWardenEndpointInvalid, err))
	}
	if c.Warden.ConnectTimeout <= 0 {
		errs = append(errs, fmt.Errorf("warden connect: %w", ErrTimeoutInvalid))
	}
	if c.UpstreamCAFile == "" {
		errs = append(errs, ErrCAFileEmpty)
	}
	return errors.Join(errs...)
}

// Validate checks one server.
func (s Server) Validate() error {
	var errs []error
	if !serverspec.ValidName(s.Name) {
		errs = append(errs, ErrServerNameInvalid)
	}
	if err := s.Upstream.Validate(); err != nil {
		errs = append(errs, err)
	}
	if !strings.HasPrefix(s.Path, "/") || strings.ContainsAny(s.Path, "?#") || hasControl(s.Path) {
		errs = append(errs, ErrUpstreamPathInvalid)
	}
	if s.ConnectTimeout <= 0 {
		errs = append(errs, fmt.Errorf("connect: %w", ErrTimeoutInvalid))
	}
	if s.MaxStream < 0 {
		errs = append(errs, ErrTimeoutInvalid)
	}
	if s.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("idle: %w", ErrTimeoutInvalid))
	}
	return errors.Join(errs...)
}

// Validate checks that e is dialable: an IP literal or a DNS name, and a port.
func (e Endpoint) Validate() error {
	var errs []error
	switch {
	case e.Host == "":
		errs = append(errs, ErrUpstreamHostEmpty)
	case !serverspec.ValidHost(e.Host):
		errs = append(errs, ErrUpstreamHostInvalid)
	}
	if e.Port == 0 || e.Port > 65535 {
		errs = append(errs, ErrUpstreamPortInvalid)
	}
	return errors.Join(errs...)
}

// Equal reports whether a and b publish the same thing. Servers are compared
// in order; Config always holds them sorted, so reordering the registry
// alone does not look like a change.
func (c Config) Equal(o Config) bool {
	return reflect.DeepEqual(c, o)
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == ' ' {
			return true
		}
	}
	return false
}
