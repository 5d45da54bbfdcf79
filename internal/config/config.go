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
type Config struct {
	// DataDir holds the store and the generated keys.
	DataDir string `json:"data_dir"`
	// PublicURL is the base URL MCP clients reach Warden and the MCP servers
	// at (Envoy's listener): it prefixes resource URLs and resource_metadata.
	PublicURL string `json:"public_url"`
	Listen    Listen `json:"listen"`
	HTTP      HTTP   `json:"http"`
	Log       Log    `json:"log"`
	Keys      Keys   `json:"keys"`
	Store     Store  `json:"store"`
	Authz     Authz  `json:"authz"`
	Policy    Policy `json:"policy"`
	Audit     Audit  `json:"audit"`
	OAuth     OAuth  `json:"oauth"`
	XDS       XDS    `json:"xds"`
	Debug     Debug  `json:"debug"`
	// MemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT), such
	// as "192MiB"; "0" or "off" leaves it unset. GOMEMLIMIT in the
	// environment wins.
	MemoryLimit string `json:"memory_limit"`
	// Servers are MCP servers declared in the file, reconciled on change.
	Servers []Server `json:"servers,omitempty"`
}

// Debug holds diagnostics that are off by default.
type Debug struct {
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin listener
	// (behind the admin token).
	Pprof bool `json:"pprof"`
}

// Listen holds the listening addresses.
type Listen struct {
	HTTP  string `json:"http"`
	Authz string `json:"authz"`
	Admin string `json:"admin"`
	XDS   string `json:"xds"`
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
	// SealingFile is the key-encryption keyring; WARDEN_SEALING_KEYS
	// ("id:base64,...", first is primary) takes precedence when set.
	SealingFile string `json:"sealing_file"`
	SigningFile string `json:"signing_file"`
	// AdminTokenFile holds the admin API token generated on first start;
	// WARDEN_ADMIN_TOKEN takes precedence when set.
	AdminTokenFile string `json:"admin_token_file"`
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
		DataDir:     "./data",
		PublicURL:   "http://localhost:10000",
		MemoryLimit: "192MiB",
		Listen:      Listen{HTTP: ":8080", Authz: ":9191", Admin: ":9090", XDS: ":18000"},
		HTTP:        HTTP{TrustedProxies: []string{"127.0.0.0/8", "::1/128"}},
		Log:         Log{Level: "info", Format: "json"},
		Store:       defaultStore(),
		Authz: Authz{
			MaxBodyBytes: 1 << 20,
			Timeout:      Duration(2 * time.Second),
			JWTTTL:       Duration(5 * time.Minute),
			Identity:     Identity{Subject: "x-warden-subject", Client: "x-warden-client"},
		},
		Policy: Policy{Watch: true},
		Audit:  Audit{Sink: "stdout"},
		OAuth:  defaultOAuth(),
		XDS:    defaultXDS(),
	}
}

// Load reads path (empty means defaults only), expands ${VAR} references,
// applies WARDEN_* overrides and validates.
func Load(path string) (Config, error) {
	c := Default()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		expanded := os.Expand(string(raw), func(k string) string { return os.Getenv(k) })
		if err := yaml.UnmarshalStrict([]byte(expanded), &c); err != nil {
			return c, fmt.Errorf("parse config %s: %w", path, err)
		}
	}
	if err := applyEnv(reflect.ValueOf(&c).Elem(), "WARDEN", os.LookupEnv); err != nil {
		return c, err
	}
	c.resolvePaths()
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
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
	if _, err := ParseBytes(c.MemoryLimit); err != nil {
		bad("memory_limit", "%v", err)
	}
	if c.Audit.Sink == "" {
		bad("audit.sink", "must be stdout, stderr, none or a file path")
	}
	errs = append(errs, c.Store.validate()...)
	errs = append(errs, c.OAuth.validate()...)
	errs = append(errs, c.XDS.validate()...)
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

// ParseBytes reads a size: a number of bytes, optionally followed by KiB,
// MiB or GiB; "0" and "off" are 0.
func ParseBytes(s string) (int64, error) {
	if s == "" || s == "off" || s == "0" {
		return 0, nil
	}
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, suffix)), m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q (want bytes, or a number with KiB, MiB or GiB)", s)
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
