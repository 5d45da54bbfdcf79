package xds

import (
	"bytes"
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
	for _, f := range []string{o.XDSAddress, o.NodeID, o.NodeCluster, o.AuthzAddress, o.HTTPAddress, o.AdminAddress} {
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
