package authz

import (
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// ServerOptions are the gRPC server options for the ext_authz listener.
//
// Stream workers matter for speed: without them grpc-go runs each Check on
// a fresh goroutine whose small stack must grow (and be copied) every time
// policy evaluation recurses; long-lived workers keep their grown stacks.
// Envoy keeps its ext_authz connections open and pings them, so pings are
// permitted without active streams.
func ServerOptions(maxRecvBytes int) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0))),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(maxRecvBytes),
	}
}
