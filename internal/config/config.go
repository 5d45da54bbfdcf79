// Package config loads Warden's single YAML configuration file, applies
// environment overrides and validates the result, reporting every problem at
// once. Every field has a default so `warden serve` runs with no file at all.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Config is the whole configuration. Field names are the YAML keys; every
// scalar can be overridden by an environment variable named WARDEN_ followed
// by the upper-cased key path joined with underscores, for example
// WARDEN_LISTEN_AUTHZ or WARDEN_OAUTH_CONNECTOR_OIDC_CLIENT_SECRET.
//
// This package is the one place Warden reads its environment: the file
// path (WARDEN_CONFIG), ${VAR} references in the file, the WARDEN_*
// overrides, the secrets that never go in the file (WARDEN_ADMIN_TOKEN,
// WARDEN_SEALING_KEYS) and GOGC. Every other package gets typed options.
type Config struct {
	// DataDir holds the store and the generated keys.
	DataDir string `json:"data_dir"`
	// PublicURL is the base URL MCP clients reach Warden and the MCP servers
	// at (Envoy's listener): it prefixes resource URLs and resource_metadata.
	PublicURL string  `json:"public_url"`
	Listen    Listen  `json:"listen"`
	HTTP      HTTP    `json:"http"`
	Log       Log     `json:"log"`
	Keys      Keys    `json:"keys"`
	Store     Store   `json:"store"`
	Authz     Authz   `json:"authz"`
	Policy    Policy  `json:"policy"`
	Audit     Audit   `json:"audit"`
	OAuth     OAuth   `json:"oauth"`
	XDS       XDS     `json:"xds"`
	Debug     Debug   `json:"debug"`
	Admin     Admin   `json:"admin"`
	Runtime   Runtime `json:"runtime"`
	Tracing   Tracing `json:"tracing"`
	// Servers are MCP servers declared in the file, reconciled on change.
	Servers []Server `json:"servers,omitempty"`
	// Credentials configures the idp, exchange and provider modes;
	// Providers are the third-party providers declared in the file.
	Credentials Credentials `json:"credentials"`
	Providers   []Provider  `json:"providers,omitempty"`
}

// Debug holds diagnostics that are off by default.
type Debug struct {
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin listener
	// (behind the admin token).
	Pprof bool `json:"pprof"`
}

// Listen holds the listening addresses and how they are protected. Only
// the HTTP listener (OAuth) is meant for clients; the defaults keep the
// other three on loopback: the ext_authz answer carries upstream
// credentials, xDS describes every upstream, and the admin API changes
// everything.
type Listen struct {
	HTTP  string `json:"http"`
	Authz string `json:"authz"`
	Admin string `json:"admin"`
	XDS   string `json:"xds"`
	// TLS turns on mutual TLS on the gRPC listeners.
	TLS ListenTLS `json:"tls"`
	// Limits bound connections on the HTTP and admin listeners.
	Limits HTTPLimits `json:"limits"`
}

// ListenTLS holds the TLS settings of the two gRPC listeners.
type ListenTLS struct {
	Authz TLS `json:"authz"`
	XDS   TLS `json:"xds"`
}

// TLS is a gRPC listener's server certificate and the CA that its clients'
// certificates must chain to. Setting cert_file turns TLS on, and then all
// three are required: a client without a certificate from client_ca_file
// is refused during the handshake. The files are read again when they
// change (certificate rotation without restart).
type TLS struct {
	CertFile     string `json:"cert_file"`
	KeyFile      string `json:"key_file"`
	ClientCAFile string `json:"client_ca_file"`
}

// Enabled reports whether the listener serves TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" || t.ClientCAFile != "" }

// HTTPLimits bound what one client can hold on the HTTP and admin
// listeners: without them a slow or idle connection is kept forever.
type HTTPLimits struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout Duration `json:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout Duration `json:"read_timeout"`
	// WriteTimeout bounds writing a response (handlers that stream extend
	// their own deadline).
	WriteTimeout Duration `json:"write_timeout"`
	// IdleTimeout closes a keep-alive connection with no request.
	IdleTimeout Duration `json:"idle_timeout"`
	// MaxConnections is the most connections each listener serves at
	// once; further connections wait in the accept queue until one closes.
	MaxConnections int `json:"max_connections"`
}

// Runtime tunes the Go runtime.
type Runtime struct {
	// GCPercent is the garbage collector's target percentage (GOGC). Check
	// allocates short-lived garbage at a high rate while the live heap stays
	// small, so the default is 400 rather than Go's 100. GOGC in the
	// environment, when set, takes precedence ("off" is -1).
	GCPercent int `json:"gc_percent"`
	// MemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT), such
	// as "192MiB": near it the collector runs sooner, so GCPercent costs
	// memory only while there is memory to spare. "off" leaves it unset.
	// GOMEMLIMIT in the environment, when set, takes precedence.
	MemoryLimit string `json:"memory_limit"`
}

// HTTP configures the OAuth HTTP listener.
type HTTP struct {
	// TrustedProxies are the addresses or CIDR ranges of the proxies
	// (Envoy) whose X-Forwarded-For Warden believes for the client
	// address of rate limits and audit events. Default: loopback only. An
	// empty list trusts no one: the peer address is the client.
	TrustedProxies []string `json:"trusted_proxies"`
}

// Log configures log/slog.
type Log struct {
	Level  string `json:"level"`  // debug, info, warn, error
	Format string `json:"format"` // json, text
}

// Keys locates key material. Empty paths default to files in DataDir.
type Keys struct {
	// SealingFile is the key-encryption keyring; SealingKeys takes
	// precedence when set.
	SealingFile string `json:"sealing_file"`
	SigningFile string `json:"signing_file"`
	// AdminTokenFile holds the admin API token generated on first start;
	// AdminToken takes precedence when set.
	AdminTokenFile string `json:"admin_token_file"`
	// SealingKeys is WARDEN_SEALING_KEYS ("id:base64,...", first is
	// primary). Secrets like this come from the environment only, never
	// from the file, and are never marshalled.
	SealingKeys string `json:"-"`
	// AdminToken is WARDEN_ADMIN_TOKEN.
	AdminToken string `json:"-"`
}

// Authz configures the ext_authz decision path.
type Authz struct {
	// MaxBodyBytes bounds the request body Warden classifies; it should
	// match Envoy's with_request_body.max_request_bytes.
	MaxBodyBytes int `json:"max_body_bytes"`
	// Timeout bounds one Check; past it the answer is a 503 deny.
	Timeout  Duration `json:"timeout"`
	JWTTTL   Duration `json:"jwt_ttl"`
	Identity Identity `json:"identity_headers"`
	// ServerFromPath takes the MCP server from a /mcp/<name> path when the
	// route sets no context_extensions.server (Envoy Gateway, Istio).
	ServerFromPath bool `json:"server_from_path"`
	// AllowedOrigins are origins (scheme://host[:port]) besides public_url's
	// whose pages may call the MCP servers; a request with any other Origin
	// is refused (403). Requests without Origin are not browsers' and pass.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
	// AllowedHosts are Host values (host[:port]) besides public_url's host
	// that the MCP servers are reached at; any other Host is refused (403).
	AllowedHosts []string `json:"allowed_hosts,omitempty"`
}

// Identity names the headers carrying caller identity upstream; empty
// disables a header.
type Identity struct {
	Subject string `json:"subject"`
	Client  string `json:"client"`
}

// Policy configures the Rego engine.
type Policy struct {
	// Dir holds .rego (and data .json) files; empty uses the embedded
	// default policy.
	Dir string `json:"dir"`
	// Watch reloads the directory on change.
	Watch bool `json:"watch"`
}

// Audit configures the audit sink.
type Audit struct {
	// Sink is "stdout", "stderr", "none", or a file path for JSON lines.
	Sink string `json:"sink"`
	// Durability is sync (a Check is answered once its event is in a
	// durable group commit) or async (once it is queued).
	Durability string `json:"durability"`
	// Fsync, with sync, also flushes each group commit to disk before the
	// Checks waiting on it are answered (survives a machine crash, not only
	// a crash of Warden), at about half the Check throughput.
	Fsync bool `json:"fsync"`
	// QueueSize bounds events waiting to be written.
	QueueSize int `json:"queue_size"`
	// OnFull is what an async Check does on a full queue: wait (up to its
	// deadline, then 503) or drop (counted, marked by an audit_gap event).
	OnFull string `json:"on_full"`
	// Retention, when set, prunes events older than it, after a signed
	// checkpoint of the newest one pruned; zero keeps every event.
	Retention Duration `json:"retention"`
	// Sinks mirror events to files and SIEMs (audit.go).
	Sinks []AuditSink `json:"sinks,omitempty"`
	// Redact leaves tool arguments out of the recorded decision inputs.
	Redact []AuditRedact `json:"redact,omitempty"`
}

// Duration is a time.Duration that reads "1m30s" in YAML.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(time.Duration(d).String())), nil
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// Default returns the configuration used when no file is given.
func Default() Config {
	return Config{
		DataDir:   "./data",
		PublicURL: "http://localhost:10000",
		Listen: Listen{
			HTTP: ":8080", Authz: "127.0.0.1:9191", Admin: "127.0.0.1:9090", XDS: "127.0.0.1:18000",
			Limits: HTTPLimits{
				ReadHeaderTimeout: Duration(10 * time.Second),
				ReadTimeout:       Duration(30 * time.Second),
				WriteTimeout:      Duration(time.Minute),
				IdleTimeout:       Duration(2 * time.Minute),
				MaxConnections:    1024,
			},
		},
		HTTP:  HTTP{TrustedProxies: []string{"127.0.0.0/8", "::1/128"}},
		Log:   Log{Level: "info", Format: "json"},
		Store: defaultStore(),
		Authz: Authz{
			MaxBodyBytes: 1 << 20,
			Timeout:      Duration(2 * time.Second),
			JWTTTL:       Duration(5 * time.Minute),
			Identity:     Identity{Subject: "x-warden-subject", Client: "x-warden-client"},
		},
		Policy:  Policy{Watch: true},
		Audit:   Audit{Sink: "stdout", Durability: "sync", QueueSize: 8192, OnFull: "wait"},
		OAuth:   defaultOAuth(),
		XDS:     defaultXDS(),
		Runtime: Runtime{GCPercent: 400, MemoryLimit: "192MiB"},
		Admin:   defaultAdmin(),
	}
}

// PathEnv names the environment variable holding the config file path,
// the default of every command's --config flag.
const PathEnv = "WARDEN_CONFIG"

// PathFromEnv returns the config file named by WARDEN_CONFIG, or "".
func PathFromEnv() string { return os.Getenv(PathEnv) }

// Load reads path (empty means defaults only), expands ${VAR} references in
// its string values, applies WARDEN_* overrides and the environment-only
// settings, derives what is left unset and validates.
func Load(path string) (Config, error) {
	c, err := load(path, os.LookupEnv, false)
	if err != nil {
		return c, err
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

func load(path string, lookup func(string) (string, bool), allowUnset bool) (Config, error) {
	c := Default()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		if err := yaml.UnmarshalStrict(raw, &c); err != nil {
			return c, fmt.Errorf("parse config %s: %w", path, err)
		}
		if err := expandStrings(reflect.ValueOf(&c).Elem(), "", lookup, allowUnset); err != nil {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(reflect.ValueOf(&c).Elem(), "WARDEN", lookup); err != nil {
		return c, err
	}
	if err := c.applyEnvOnly(lookup); err != nil {
		return c, err
	}
	c.resolve()
	return c, nil
}

// applyEnvOnly reads the settings that have no place in the file.
func (c *Config) applyEnvOnly(lookup func(string) (string, bool)) error {
	if v, ok := lookup("WARDEN_SEALING_KEYS"); ok && v != "" {
		c.Keys.SealingKeys = v
	}
	if v, ok := lookup("WARDEN_ADMIN_TOKEN"); ok && v != "" {
		c.Keys.AdminToken = v
	}
	if v, ok := lookup("GOGC"); ok && v != "" {
		if v == "off" {
			c.Runtime.GCPercent = -1
		} else if n, err := strconv.Atoi(v); err == nil {
			c.Runtime.GCPercent = n
		} else {
			return fmt.Errorf("GOGC: want a percentage or off, got %q", v)
		}
	}
	if v, ok := lookup("GOMEMLIMIT"); ok && v != "" {
		if _, err := ParseBytes(v); err != nil {
			return fmt.Errorf("GOMEMLIMIT: %w", err)
		}
		c.Runtime.MemoryLimit = v
	}
	return nil
}

// resolve fills the settings whose default depends on others.
func (c *Config) resolve() {
	c.resolvePaths()
	// Envoy reaches Warden where Warden listens unless told otherwise; a
	// listener on every interface is dialled on loopback.
	if c.XDS.WardenAuthzAddress == "" {
		c.XDS.WardenAuthzAddress = DialAddress(c.Listen.Authz)
	}
	if c.XDS.WardenHTTPAddress == "" {
		c.XDS.WardenHTTPAddress = DialAddress(c.Listen.HTTP)
	}
}

// DialAddress turns a listen address into one a local client can dial: a
// missing or unspecified host (":9090", "0.0.0.0:9090", "[::]:9090")
// becomes 127.0.0.1. An address that does not parse gives "".
func DialAddress(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func (c *Config) resolvePaths() {
	def := func(p *string, name string) {
		if *p == "" {
			*p = filepath.Join(c.DataDir, name)
		}
	}
	def(&c.Keys.SealingFile, "sealing-keys.json")
	def(&c.Keys.SigningFile, "signing-keys.jwks")
	def(&c.Keys.AdminTokenFile, "admin-token")
}

// Validate reports every problem, joined.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, f string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+f, append([]any{field}, a...)...))
	}
	if c.DataDir == "" {
		bad("data_dir", "must be set")
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("public_url", "must be an absolute http(s) URL, got %q", c.PublicURL)
	} else if u.RawQuery != "" || u.Fragment != "" {
		bad("public_url", "must not have a query or fragment")
	}
	for name, addr := range map[string]string{"listen.http": c.Listen.HTTP, "listen.authz": c.Listen.Authz, "listen.admin": c.Listen.Admin, "listen.xds": c.Listen.XDS} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(name, "invalid address %q: %v", addr, err)
		}
	}
	for _, l := range []struct {
		field string
		tls   TLS
	}{{"listen.tls.authz", c.Listen.TLS.Authz}, {"listen.tls.xds", c.Listen.TLS.XDS}} {
		if l.tls.Enabled() && (l.tls.CertFile == "" || l.tls.KeyFile == "" || l.tls.ClientCAFile == "") {
			bad(l.field, "cert_file, key_file and client_ca_file are all required (TLS here is mutual TLS)")
		}
	}
	lim := c.Listen.Limits
	for _, d := range []struct {
		field string
		v     Duration
	}{
		{"read_header_timeout", lim.ReadHeaderTimeout}, {"read_timeout", lim.ReadTimeout},
		{"write_timeout", lim.WriteTimeout}, {"idle_timeout", lim.IdleTimeout},
	} {
		if d.v <= 0 {
			bad("listen.limits."+d.field, "must be positive")
		}
	}
	if lim.MaxConnections <= 0 {
		bad("listen.limits.max_connections", "must be positive")
	}
	if c.Runtime.GCPercent < -1 {
		bad("runtime.gc_percent", "must be -1 (off) or a percentage, got %d", c.Runtime.GCPercent)
	}
	for i, p := range c.HTTP.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			bad(fmt.Sprintf("http.trusted_proxies[%d]", i), "%v", err)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		bad("log.format", "must be json or text, got %q", c.Log.Format)
	}
	if c.Authz.MaxBodyBytes <= 0 {
		bad("authz.max_body_bytes", "must be positive")
	}
	if c.Authz.Timeout <= 0 {
		bad("authz.timeout", "must be positive")
	}
	if c.Authz.JWTTTL <= 0 || c.Authz.JWTTTL.D() > 5*time.Minute {
		bad("authz.jwt_ttl", "must be between 0 and 5m, got %s", c.Authz.JWTTTL.D())
	}
	if _, err := ParseBytes(c.Runtime.MemoryLimit); err != nil {
		bad("runtime.memory_limit", "%v", err)
	}
	if c.Audit.Sink == "" {
		bad("audit.sink", "must be stdout, stderr, none or a file path")
	}
	errs = append(errs, c.Store.validate()...)
	errs = append(errs, c.OAuth.validate()...)
	errs = append(errs, c.XDS.validate()...)
	errs = append(errs, c.Admin.validate()...)
	errs = append(errs, c.Credentials.validate()...)
	errs = append(errs, validateProviders(c.Providers)...)
	errs = append(errs, c.Audit.validate()...)
	errs = append(errs, c.Tracing.validate()...)
	errs = append(errs, validateRedact(c.Audit.Redact)...)
	names := map[string]bool{}
	for i, s := range c.Servers {
		if names[s.Name] {
			bad(fmt.Sprintf("servers[%d].name", i), "duplicate %q", s.Name)
		}
		names[s.Name] = true
		for _, err := range s.validate() {
			errs = append(errs, fmt.Errorf("servers[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// applyEnv walks the struct by JSON tag and sets scalar fields from
// environment variables named prefix_TAG_PATH.
func applyEnv(v reflect.Value, prefix string, lookup func(string) (string, bool)) error {
	t := v.Type()
	var errs []error
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("json"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			if err := applyEnv(fv, name, lookup); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		val, ok := lookup(name)
		if !ok {
			continue
		}
		if err := setScalar(fv, val); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func setScalar(fv reflect.Value, val string) error {
	if fv.Type() == reflect.TypeOf(Duration(0)) {
		d, err := time.ParseDuration(val)
		if err != nil {
			return fmt.Errorf("invalid duration %q", val)
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(val)
	case reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return fmt.Errorf("invalid bool %q", val)
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return fmt.Errorf("invalid integer %q", val)
		}
		fv.SetInt(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return errors.New("only string lists can be set from the environment")
		}
		parts := strings.Split(val, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		fv.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("cannot be set from the environment (%s)", fv.Kind())
	}
	return nil
}

// ParseBytes reads a size as GOMEMLIMIT writes it: a number of bytes,
// optionally followed by B, KiB, MiB, GiB or TiB; "0" and "off" are 0.
func ParseBytes(s string) (int64, error) {
	if s == "" || s == "off" || s == "0" {
		return 0, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q (want bytes, or a number with B, KiB, MiB, GiB or TiB)", s)
	}
	return n * mult, nil
}

// ParsePrefix reads an address ("10.0.0.7") or CIDR range ("10.0.0.0/8").
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q is not an address or CIDR range", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR range", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// ResourceURL is the canonical resource URL (RFC 8707, RFC 9728) of the
// registered MCP server name: where clients reach it through Envoy.
func (c Config) ResourceURL(name string) string {
	return strings.TrimRight(c.PublicURL, "/") + "/mcp/" + name
}

// ResourceMetadataURL is the RFC 9728 protected resource metadata URL of
// server name, the value of resource_metadata in 401 challenges.
func (c Config) ResourceMetadataURL(name string) string {
	return strings.TrimRight(c.PublicURL, "/") + "/.well-known/oauth-protected-resource/mcp/" + name
}

// Issuer is the OAuth issuer identifier of Warden's authorization server.
func (c Config) Issuer() string { return strings.TrimRight(c.PublicURL, "/") }
