package mtls_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/warden-mcp/warden/internal/mtls"
	"github.com/warden-mcp/warden/internal/mtls/mtlstest"
)

// serveHealth runs a real gRPC server with cfg on loopback.
func serveHealth(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	healthpb.RegisterHealthServer(g, health.NewServer())
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// call makes one health check with the client configuration given.
func call(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestOnlyClientsWithACertificateFromTheCAGetIn(t *testing.T) {
	p := mtlstest.New(t)
	cfg, err := mtls.ServerConfig(mtls.Files{CertFile: p.ServerCert, KeyFile: p.ServerKey, ClientCAFile: p.CAFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveHealth(t, cfg)
	if err := call(t, addr, p.ClientTLS(t, p.ClientCert, p.ClientKey)); err != nil {
		t.Fatalf("trusted client refused: %v", err)
	}
	if err := call(t, addr, p.ClientTLS(t, "", "")); err == nil {
		t.Fatal("a client without a certificate got in")
	}
	if err := call(t, addr, p.ClientTLS(t, p.ForeignCert, p.ForeignKey)); err == nil {
		t.Fatal("a client with a certificate from another CA got in")
	}
}

// A rotated server certificate is served on the next handshake, without a
// restart; files that stop loading leave the last good ones in place.
func TestRotationWithoutRestart(t *testing.T) {
	p := mtlstest.New(t)
	files := mtls.Files{CertFile: p.ServerCert, KeyFile: p.ServerKey, ClientCAFile: p.CAFile}
	cfg, err := mtls.ServerConfig(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveHealth(t, cfg)
	client := p.ClientTLS(t, p.ClientCert, p.ClientKey)
	if err := call(t, addr, client); err != nil {
		t.Fatal(err)
	}
	// A new PKI: the old client no longer matches the new CA, the new one
	// does.
	q := mtlstest.New(t)
	for src, dst := range map[string]string{q.ServerCert: p.ServerCert, q.ServerKey: p.ServerKey, q.CAFile: p.CAFile} {
		copyFile(t, src, dst)
	}
	future := time.Now().Add(time.Minute)
	for _, f := range []string{p.ServerCert, p.ServerKey, p.CAFile} {
		_ = os.Chtimes(f, future, future)
	}
	if err := call(t, addr, q.ClientTLS(t, q.ClientCert, q.ClientKey)); err != nil {
		t.Fatalf("rotated certificates not served: %v", err)
	}
	if err := call(t, addr, client); err == nil {
		t.Fatal("the client of the old CA still gets in after rotation")
	}
	// A broken key keeps the last good configuration.
	if err := os.WriteFile(p.ServerKey, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := call(t, addr, q.ClientTLS(t, q.ClientCert, q.ClientKey)); err != nil {
		t.Fatalf("a broken rotation took the listener down: %v", err)
	}
}

func TestMissingFilesFailAtStart(t *testing.T) {
	p := mtlstest.New(t)
	for _, f := range []mtls.Files{
		{CertFile: p.ServerCert, KeyFile: p.ServerKey},
		{CertFile: p.ServerCert, KeyFile: p.ServerKey, ClientCAFile: p.Dir + "/none.pem"},
		{CertFile: p.ServerCert, KeyFile: p.ClientKey, ClientCAFile: p.CAFile},    // key of another cert
		{CertFile: p.ServerCert, KeyFile: p.ServerKey, ClientCAFile: p.ServerKey}, // no certificate in it
	} {
		if _, err := mtls.ServerConfig(f, nil); err == nil {
			t.Errorf("%+v accepted", f)
		}
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
