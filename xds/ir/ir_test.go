package ir

import (
	"errors"
	"testing"
	"time"
)

func validServer() Server {
	return Server{Name: "weather", Upstream: Endpoint{Host: "weather.internal", Port: 8080}, Authority: "weather.internal:8080",
		Path: "/mcp", ConnectTimeout: time.Second, IdleTimeout: time.Hour}
}

func validConfig() Config {
	return Config{
		Listener:       Listener{Address: "0.0.0.0", Port: 10000, StreamIdleTimeout: time.Minute},
		ExtAuthz:       ExtAuthz{Timeout: time.Second, MaxRequestBytes: 1024},
		ExtProc:        ExtProc{MessageTimeout: time.Second},
		Warden:         Warden{Authz: Endpoint{Host: "127.0.0.1", Port: 9191}, HTTP: Endpoint{Host: "warden", Port: 8080}, ConnectTimeout: time.Second},
		UpstreamCAFile: "/etc/ssl/certs/ca-certificates.crt",
		Servers:        []Server{validServer()},
	}
}

func TestValidateJoinsEveryProblem(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	s := Server{Name: "Bad Name", Upstream: Endpoint{Host: "bad host", Port: 0}, Path: "mcp?x", ConnectTimeout: 0, IdleTimeout: -1}
	err := s.Validate()
	for _, want := range []error{ErrServerNameInvalid, ErrUpstreamHostInvalid, ErrUpstreamPortInvalid, ErrUpstreamPathInvalid, ErrTimeoutInvalid} {
		if !errors.Is(err, want) {
			t.Errorf("missing %v in %v", want, err)
		}
	}
	c := validConfig()
	c.Listener.Address = "localhost"
	c.Warden.HTTP.Host = ""
	c.ExtAuthz.MaxRequestBytes = 0
	c.Servers = append(c.Servers, validServer())
	err = c.Validate()
	for _, want := range []error{ErrListenerAddressEmpty, ErrWardenEndpointInvalid, ErrUpstreamHostEmpty, ErrMaxRequestBytes, ErrServerNameDuplicate} {
		if !errors.Is(err, want) {
			t.Errorf("missing %v in %v", want, err)
		}
	}
}

func TestEndpointHosts(t *testing.T) {
	for host, ok := range map[string]bool{
		"a": true, "mcp-1.svc.cluster.local": true, "_grpc._tcp.x": true, "10.0.0.1": true, "::1": true,
		"": false, "-a": false, "a..b": false, "a b": false, "UPPER": false, "a/b": false,
	} {
		err := Endpoint{Host: host, Port: 1}.Validate()
		if (err == nil) != ok {
			t.Errorf("%q: err %v, want ok=%v", host, err, ok)
		}
	}
	if got := (Endpoint{Host: "::1", Port: 80}).String(); got != "[::1]:80" {
		t.Errorf("String %q", got)
	}
}

func TestEqual(t *testing.T) {
	a, b := validConfig(), validConfig()
	if !a.Equal(b) {
		t.Fatal("equal configs differ")
	}
	b.Servers[0].HTTP2 = true
	if a.Equal(b) {
		t.Fatal("a protocol change is not a difference")
	}
}
