package config

import "fmt"

// XDS configures the Envoy resources Warden publishes.
type XDS struct {
	// NodeIDs limits which Envoy node ids get a snapshot; empty serves any.
	NodeIDs []string `json:"node_ids,omitempty"`
	// ListenerPort is the port of the Envoy listener carrying MCP traffic.
	ListenerPort int `json:"listener_port"`
	// MaxRequestBytes is ext_authz with_request_body.max_request_bytes.
	MaxRequestBytes int `json:"max_request_bytes"`
}

func defaultXDS() XDS {
	return XDS{ListenerPort: 10000, MaxRequestBytes: 1 << 20}
}

func (x XDS) validate() []error {
	var errs []error
	if x.ListenerPort <= 0 || x.ListenerPort > 65535 {
		errs = append(errs, fmt.Errorf("xds.listener_port: must be 1-65535, got %d", x.ListenerPort))
	}
	if x.MaxRequestBytes <= 0 {
		errs = append(errs, fmt.Errorf("xds.max_request_bytes: must be positive"))
	}
	return errs
}
