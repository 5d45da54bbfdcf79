// Command floor is an ext_authz server that allows everything without
// looking at the request: what grpc-go alone costs on this machine, so the
// load generator's figures for Warden can be read against the floor.
package main

import (
	"context"
	"flag"
	"log"
	"net"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

type allowAll struct {
	authv3.UnimplementedAuthorizationServer
}

var okResp = &authv3.CheckResponse{
	Status:       &rpcstatus.Status{},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (allowAll) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return okResp, nil
}

func main() {
	addr := flag.String("listen", "127.0.0.1:9191", "address")
	flag.Parse()
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer(grpc.NumStreamWorkers(8))
	authv3.RegisterAuthorizationServer(s, allowAll{})
	log.Fatal(s.Serve(lis))
}
