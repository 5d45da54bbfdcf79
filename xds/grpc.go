package xds

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// GRPCServerOptions are the options the xDS gRPC server should be created
// with. Envoy's bootstrap (warden envoy bootstrap) pings every 30s on the
// warden_xds connection; grpc-go's default policy allows a ping only every
// 5 minutes and would close the connection with "too_many_pings". Warden
// also pings idle Envoys so that a dead one releases its stream.
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    30 * time.Second,
			Timeout: 10 * time.Second,
		}),
		// One ADS stream per Envoy; leave room for many Envoys per connection
		// pool without letting one client open unbounded streams.
		grpc.MaxConcurrentStreams(1000),
	}
}
