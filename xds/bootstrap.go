package xds

import (
	"bytes"
	"cmp"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"text/template"
	"unicode"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"

	"github.com/warden-mcp/warden/xds/internal/deepvalidate"
	"github.com/warden-mcp/warden/xds/internal/protoyaml"
	"github.com/warden-mcp/warden/xds/translate"
)

//go:embed bootstrap.yaml.tmpl
var bootstrapTemplate string

var bootstrapTmpl = template.Must(template.New("bootstrap").Funcs(template.FuncMap{
	// quote renders a YAML double-quoted scalar (JSON strings are valid YAML).
	"quote": func(s string) (string, error) {
		b, err := json.Marshal(s)
		return string(b), err
	},
}).Parse(bootstrapTemplate))

// BootstrapOptions are the inputs of `warden envoy bootstrap`.
type BootstrapOptions struct {
	// XDSAddress is host:port of Warden's xDS gRPC listener. Required.
	XDSAddress string
	// NodeID is this Envoy's node id (one of xds.node_ids if set). Required.
	NodeID string
	// NodeCluster is the node's cluster name; default "warden".
	NodeCluster string
	// AuthzAddress and HTTPAddress are host:port of Warden's ext_authz and
	// HTTP listeners; default the XDSAddress host with ports 9191 and 8080.
	AuthzAddress string
	HTTPAddress  string
	// AdminAddress is Envoy's admin listener; default 127.0.0.1:9901.
	AdminAddress string
	// Delta selects incremental (delta) xDS instead of state of the world.
	Delta bool
	// TLS, when set, makes warden_xds and warden_authz mutual TLS: the
	// client certificate, key and CA as paths where Envoy runs. An empty
	// ServerName checks each address's own host.
	TLS *translate.ClientTLS
}

// DefaultBootstrapOptions are the values envoy/bootstrap.yaml is rendered with.
func DefaultBootstrapOptions() BootstrapOptions {
	return BootstrapOptions{XDSAddress: "127.0.0.1:18000", NodeID: "warden-envoy"}
}

// RenderBootstrap renders the Envoy bootstrap and checks it the way Envoy
// would parse it: into the Bootstrap proto, every Any resolved and validated.
func RenderBootstrap(o BootstrapOptions) ([]byte, error) {
	if o.NodeID == "" {
		return nil, errors.New("node id is required")
	}
	fields := []string{o.XDSAddress, o.NodeID, o.NodeCluster, o.AuthzAddress, o.HTTPAddress, o.AdminAddress}
	if o.TLS != nil {
		if o.TLS.CertFile == "" || o.TLS.KeyFile == "" || o.TLS.CAFile == "" {
			return nil, errors.New("TLS needs a client certificate, its key and the CA of Warden's certificate")
		}
		fields = append(fields, o.TLS.CertFile, o.TLS.KeyFile, o.TLS.CAFile, o.TLS.ServerName)
	}
	for _, f := range fields {
		if strings.ContainsFunc(f, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) {
			return nil, fmt.Errorf("%q: spaces and control characters are not allowed", f)
		}
	}
	if o.NodeCluster == "" {
		o.NodeCluster = "warden"
	}
	if o.AdminAddress == "" {
		o.AdminAddress = "127.0.0.1:9901"
	}
	xh, xp, err := splitHostPort("xds address", o.XDSAddress)
	if err != nil {
		return nil, err
	}
	v := map[string]any{
		"NodeID": o.NodeID, "NodeCluster": o.NodeCluster, "Delta": o.Delta,
		"XDSAddress": o.XDSAddress, "XDSHost": xh, "XDSPort": xp,
		"AuthzAddressSet": o.AuthzAddress != "", "HTTPAddressSet": o.HTTPAddress != "",
		"AdminAddressSet": o.AdminAddress != "127.0.0.1:9901",
		"TLS":             o.TLS,
	}
	if o.AuthzAddress == "" {
		o.AuthzAddress = net.JoinHostPort(xh, "9191")
	}
	if o.HTTPAddress == "" {
		o.HTTPAddress = net.JoinHostPort(xh, "8080")
	}
	for _, a := range []struct{ name, addr, key string }{
		{"authz address", o.AuthzAddress, "Authz"}, {"http address", o.HTTPAddress, "HTTP"}, {"admin address", o.AdminAddress, "Admin"},
	} {
		h, p, err := splitHostPort(a.name, a.addr)
		if err != nil {
			return nil, err
		}
		v[a.key+"Address"], v[a.key+"Host"], v[a.key+"Port"] = a.addr, h, p
	}
	if o.TLS != nil {
		v["XDSTLS"] = tlsValues(*o.TLS, xh)
		v["AuthzTLS"] = tlsValues(*o.TLS, v["AuthzHost"].(string))
	}
	var buf bytes.Buffer
	if err := bootstrapTmpl.Execute(&buf, v); err != nil {
		return nil, fmt.Errorf("render bootstrap: %w", err)
	}
	var b bootstrapv3.Bootstrap
	if err := protoyaml.Unmarshal(buf.Bytes(), &b); err != nil {
		return nil, fmt.Errorf("rendered bootstrap does not parse: %w", err)
	}
	if err := deepvalidate.Message(&b); err != nil {
		return nil, fmt.Errorf("rendered bootstrap is invalid: %w", err)
	}
	return buf.Bytes(), nil
}

// tlsValues fills the "tls" template for a cluster dialling host: the
// certificate must carry ServerName (default host), as a DNS or IP SAN; SNI
// is sent for names only (RFC 6066 section 3). It matches what the xDS
// translation publishes for warden_authz.
func tlsValues(t translate.ClientTLS, host string) map[string]string {
	name := strings.ToLower(cmp.Or(t.ServerName, host))
	v := map[string]string{"CertFile": t.CertFile, "KeyFile": t.KeyFile, "CAFile": t.CAFile, "Name": name, "SANType": "DNS", "SNI": name}
	if net.ParseIP(name) != nil {
		v["SANType"], v["SNI"] = "IP_ADDRESS", ""
	}
	return v
}

func splitHostPort(what, addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if h == "" || err != nil || n <= 0 || n > 65535 {
		return "", 0, fmt.Errorf("%s %q: want host:port with a host and a port 1-65535", what, addr)
	}
	return h, n, nil
}
