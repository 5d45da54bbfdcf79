package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/warden-mcp/warden/xds"
	"github.com/warden-mcp/warden/xds/translate"
)

// newEnvoyCmd groups the Envoy integration helpers.
func newEnvoyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "envoy",
		Short: "Envoy integration helpers",
	}
	cmd.AddCommand(newEnvoyBootstrapCmd())
	return cmd
}

func newEnvoyBootstrapCmd() *cobra.Command {
	o := xds.DefaultBootstrapOptions()
	var output string
	var tlsOpts translate.ClientTLS
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Print an Envoy bootstrap that takes its listener, routes and clusters from Warden over ADS",
		Long: `Print an Envoy bootstrap that connects to Warden's xDS server (ADS over
gRPC) and declares Warden's ext_authz and HTTP listeners as static clusters.
The output is validated against Envoy's API before it is written.

  warden envoy bootstrap --xds-address warden:18000 --node-id edge-1 > envoy.yaml
  envoy -c envoy.yaml

With listen.tls.xds and listen.tls.authz on, give Envoy its client
certificate and the CA of Warden's certificate (paths where Envoy runs):

  warden envoy bootstrap --xds-address warden.internal:18000 --node-id edge-1 \
    --tls-cert /etc/envoy/tls/envoy.pem --tls-key /etc/envoy/tls/envoy-key.pem \
    --tls-ca /etc/envoy/tls/warden-ca.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tlsOpts != (translate.ClientTLS{}) {
				o.TLS = &tlsOpts
			}
			b, err := xds.RenderBootstrap(o)
			if err != nil {
				return err
			}
			if output == "" || output == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if err := os.WriteFile(output, b, 0o644); err != nil {
				return fmt.Errorf("write bootstrap: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.XDSAddress, "xds-address", o.XDSAddress, "host:port of Warden's xDS gRPC listener, as Envoy reaches it")
	f.StringVar(&o.NodeID, "node-id", o.NodeID, "Envoy node id (must be in xds.node_ids when that is set)")
	f.StringVar(&o.NodeCluster, "node-cluster", "warden", "Envoy node cluster")
	f.StringVar(&o.AuthzAddress, "authz-address", "", "host:port of Warden's ext_authz gRPC listener (default: xds host, port 9191)")
	f.StringVar(&o.HTTPAddress, "http-address", "", "host:port of Warden's HTTP listener (default: xds host, port 8080)")
	f.StringVar(&o.AdminAddress, "admin-address", "127.0.0.1:9901", "Envoy admin listener; keep it on loopback")
	f.BoolVar(&o.Delta, "delta", false, "use incremental (delta) xDS instead of state of the world")
	f.StringVar(&tlsOpts.CertFile, "tls-cert", "", "client certificate Envoy presents to Warden's xDS and ext_authz listeners (mutual TLS)")
	f.StringVar(&tlsOpts.KeyFile, "tls-key", "", "key of --tls-cert")
	f.StringVar(&tlsOpts.CAFile, "tls-ca", "", "CA that Warden's server certificate is verified against")
	f.StringVar(&tlsOpts.ServerName, "tls-server-name", "", "name Warden's certificate must carry (default: the host of each address)")
	f.StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	return cmd
}
