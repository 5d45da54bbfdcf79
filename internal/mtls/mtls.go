// Package mtls builds the server side of mutual TLS for Warden's gRPC
// listeners (ext_authz and xDS): a server certificate and a CA that every
// client certificate must chain to. The files are read again when they
// change, so certificates rotate (cert-manager, a renewed Secret) without a
// restart; a rotation that does not load keeps the last good files.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Files names the PEM files of one listener.
type Files struct {
	// CertFile and KeyFile are the server's certificate (chain) and key.
	CertFile string
	KeyFile  string
	// ClientCAFile holds the CA certificates client certificates must
	// chain to.
	ClientCAFile string
}

// ServerConfig returns a TLS configuration that presents the certificate
// in f and refuses, during the handshake, any client without a certificate
// issued by f.ClientCAFile. It fails now if the files do not load.
func ServerConfig(f Files, log *slog.Logger) (*tls.Config, error) {
	if f.CertFile == "" || f.KeyFile == "" || f.ClientCAFile == "" {
		return nil, errors.New("mtls: cert, key and client CA files are all required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &reloader{files: f, log: log}
	st, err := r.stamps()
	if err != nil {
		return nil, err
	}
	cfg, err := load(f)
	if err != nil {
		return nil, err
	}
	r.stamp, r.cfg = st, cfg
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: r.get}, nil
}

// load reads the files into a complete server configuration.
func load(f Files) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("mtls: server certificate %s / key %s: %w", f.CertFile, f.KeyFile, err)
	}
	pem, err := os.ReadFile(f.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("mtls: client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("mtls: client CA %s holds no PEM certificate", f.ClientCAFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		// gRPC needs HTTP/2; grpc-go refuses a TLS client that negotiates
		// no ALPN, so Envoy's side sets alpn_protocols: [h2] too.
		NextProtos: []string{"h2"},
	}, nil
}

// reloader hands each handshake the configuration of the files as they
// are now.
type reloader struct {
	files Files
	log   *slog.Logger

	mu     sync.Mutex
	stamp  [3]stamp
	cfg    *tls.Config
	warned string
}

// stamp identifies a file's content cheaply: a new modification time or
// size means it was written again.
type stamp struct {
	mod  time.Time
	size int64
}

func (r *reloader) stamps() ([3]stamp, error) {
	var out [3]stamp
	for i, p := range []string{r.files.CertFile, r.files.KeyFile, r.files.ClientCAFile} {
		fi, err := os.Stat(p)
		if err != nil {
			return out, fmt.Errorf("mtls: %w", err)
		}
		out[i] = stamp{fi.ModTime(), fi.Size()}
	}
	return out, nil
}

// get runs on every handshake; handshakes are rare (Envoy keeps its gRPC
// connections), so three stats each are cheap.
func (r *reloader) get(*tls.ClientHelloInfo) (*tls.Config, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.stamps()
	if err == nil && st != r.stamp {
		var cfg *tls.Config
		if cfg, err = load(r.files); err == nil {
			r.stamp, r.cfg = st, cfg
			r.log.Info("TLS certificates reloaded", "cert", r.files.CertFile, "client_ca", r.files.ClientCAFile)
		}
	}
	switch {
	case err == nil:
		r.warned = ""
	case err.Error() != r.warned:
		// Half-written files during a rotation land here; the last good
		// certificates keep serving. Each new problem is logged once.
		r.warned = err.Error()
		r.log.Warn("TLS certificates changed but do not load; keeping the previous ones", "err", err)
	}
	return r.cfg, nil
}
