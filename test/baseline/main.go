// Command baseline measures a plain OPA ext_authz server, built the way the
// OPA-Envoy plugin (github.com/open-policy-agent/opa-envoy-plugin) answers
// Check, under the same load test/loadgen puts on Warden, so the two can be
// compared on one machine. See README.md for how faithful it is.
//
//	go run ./test/baseline                  # measure (starts the server itself)
//	go run ./test/baseline serve -policy D  # the server alone
//
// The measuring side starts this same binary with `serve` as a separate
// process, like test/loadgen starts `warden serve`.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/open-policy-agent/opa/v1/logging"
	"google.golang.org/grpc"

	_ "embed"

	"github.com/warden-mcp/warden/test/load"
)

var (
	//go:embed policy/decision.rego
	decisionRego string
	//go:embed policy/identity_jwt.rego
	identityJWTRego string
	//go:embed policy/identity_header.rego
	identityHeaderRego string
)

// The same groups → tools table as test/loadgen's policyData.
const toolsByGroup = `{"finance": ["echo", "run_sql"], "eng": ["deploy"]}`

const (
	issuer   = "https://idp.example.com"
	audience = "mcp-gateway"
	subject  = "load@example.com"
	decision = "envoy/authz/result"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		if err := serveMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "baseline serve:", err)
			os.Exit(1)
		}
		return
	}
	ids := flag.String("identity", "jwt-hs256,header", "identity variants to measure, comma-separated: jwt-hs256, jwt-es256, header")
	dur := flag.Duration("duration", 10*time.Second, "measuring time per concurrency level")
	warm := flag.Duration("warmup", 2*time.Second, "warm-up time per level")
	levels := flag.String("callers", "1,4,16", "concurrency levels")
	conns := flag.Int("conns", 2, "gRPC connections shared by the callers")
	gogc := flag.String("server-gogc", "", "GOGC for the server process (empty: Go's default, as the plugin runs)")
	workers := flag.Int("server-stream-workers", 0, "grpc.NumStreamWorkers for the server (0: grpc-go's default, as the plugin runs)")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the server's whole run to <this>.<identity>")
	flag.Parse()
	for _, id := range strings.Split(*ids, ",") {
		id = strings.TrimSpace(id)
		serveArgs := []string{"-stream-workers", strconv.Itoa(*workers)}
		if *profile != "" {
			serveArgs = append(serveArgs, "-cpuprofile", *profile+"."+id)
		}
		if err := run(id, *dur, *warm, *levels, *conns, *gogc, serveArgs); err != nil {
			fmt.Fprintln(os.Stderr, "baseline:", err)
			os.Exit(1)
		}
	}
}

// serveMain runs the plugin stand-in until SIGINT or SIGTERM.
func serveMain(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9191", "gRPC listen address")
	dir := fs.String("policy", "", "directory with .rego files and data.json")
	path := fs.String("path", decision, "decision path (the plugin's `path`)")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	workers := fs.Int("stream-workers", 0, "grpc.NumStreamWorkers (0: grpc-go's default, as the plugin runs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("-policy is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	// The plugin logs through OPA's standard logger at info level.
	p, err := loadPlugin(ctx, *dir, *path, logging.New())
	if err != nil {
		return err
	}
	return serve(ctx, *addr, p, *workers)
}

// variant is one way of identifying the caller: the policy module that
// derives claims, the data it needs, and the headers the request carries.
type variant struct {
	identityRego string
	jwt          map[string]any    // data.jwt, for the JWT variants
	headers      map[string]string // identity headers added to each request
	badHeaders   map[string]string // headers of a request that must get a 401
}

func newVariant(name string) (variant, error) {
	constraints := map[string]any{"iss": issuer, "aud": audience}
	var key jwt.SignEncryptParseOption
	switch name {
	case "jwt-hs256":
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		constraints["secret"] = hex.EncodeToString(secret)
		key = jwt.WithKey(jwa.HS256, []byte(hex.EncodeToString(secret)))
	case "jwt-es256":
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return variant{}, err
		}
		der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
		if err != nil {
			return variant{}, err
		}
		constraints["cert"] = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		key = jwt.WithKey(jwa.ES256, priv)
	case "header":
		return variant{
			identityRego: identityHeaderRego,
			headers:      map[string]string{"x-mcp-user": subject, "x-mcp-groups": "finance"},
			badHeaders:   map[string]string{},
		}, nil
	default:
		return variant{}, fmt.Errorf("unknown identity variant %q (want jwt-hs256, jwt-es256 or header)", name)
	}
	now := time.Now()
	tok, err := jwt.NewBuilder().Issuer(issuer).Audience([]string{audience}).Subject(subject).
		IssuedAt(now).Expiration(now.Add(time.Hour)).Claim("groups", []string{"finance"}).Build()
	if err != nil {
		return variant{}, err
	}
	signed, err := jwt.Sign(tok, key)
	if err != nil {
		return variant{}, err
	}
	// A token whose signature does not verify: last signature byte changed.
	bad := slices.Clone(signed)
	if bad[len(bad)-2] == 'A' {
		bad[len(bad)-2] = 'B'
	} else {
		bad[len(bad)-2] = 'A'
	}
	return variant{
		identityRego: identityJWTRego,
		jwt:          map[string]any{"constraints": constraints},
		headers:      map[string]string{"authorization": "Bearer " + string(signed)},
		badHeaders:   map[string]string{"authorization": "Bearer " + string(bad)},
	}, nil
}

// writePolicy lays out the policy directory the server loads.
func writePolicy(dir string, v variant) error {
	var tools any
	if err := json.Unmarshal([]byte(toolsByGroup), &tools); err != nil {
		return err
	}
	data := map[string]any{"tools_by_group": tools}
	if v.jwt != nil {
		data["jwt"] = v.jwt
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	for name, content := range map[string][]byte{
		"decision.rego": []byte(decisionRego), "identity.rego": []byte(v.identityRego), "data.json": raw,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// checkRequest is test/loadgen's request with this variant's identity
// headers instead of Warden's handle.
func checkRequest(i int, tool string, identity map[string]string) *authv3.CheckRequest {
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"message":"hello","n":3}}}`)
	headers := map[string]string{
		":method": "POST", ":path": "/mcp/bi", ":authority": "mcp.example.com", ":scheme": "https",
		"content-type": "application/json", "accept": "application/json, text/event-stream",
		"x-request-id": "load-" + strconv.Itoa(i), "mcp-session-id": "sess-1", "mcp-protocol-version": "2025-11-25",
		"x-envoy-auth-partial-body": "false", "user-agent": "loadgen",
	}
	for k, v := range identity {
		headers[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "load-" + strconv.Itoa(i), Method: "POST", Path: "/mcp/bi", Host: "mcp.example.com", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: headers, RawBody: body, Size: int64(len(body)),
		}},
		ContextExtensions: map[string]string{"server": "bi"},
	}}
}

func run(name string, dur, warm time.Duration, levels string, nconns int, gogc string, serveArgs []string) error {
	v, err := newVariant(name)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "baseline-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := writePolicy(dir, v); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	addr := load.FreePort()
	cmd := exec.Command(self, append([]string{"serve", "-addr", addr, "-policy", dir}, serveArgs...)...)
	cmd.Env = os.Environ()
	if gogc != "" {
		cmd.Env = append(cmd.Env, "GOGC="+gogc)
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()

	conns, err := load.Dial(addr, nconns)
	if err != nil {
		return err
	}
	defer load.CloseAll(conns)
	if err := sanity(conns[0], v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	mk := func(i int) *authv3.CheckRequest { return checkRequest(i, "echo", v.headers) }

	fmt.Print(load.MachineLine(nconns))
	gc := "Go default"
	if gogc != "" {
		gc = gogc
	}
	fmt.Printf("baseline: plain OPA ext_authz (opa-envoy-plugin Check path), identity %s, path: allow, tools/call, per-tool Rego policy, decision logging off, server GOGC %s\n", name, gc)
	ns, err := load.ParseLevels(levels)
	if err != nil {
		return err
	}
	fmt.Print(load.Header())
	for _, n := range ns {
		res := load.Measure(load.Options{Conns: conns, Request: mk, Callers: n, Warmup: warm, Duration: dur, PID: cmd.Process.Pid})
		fmt.Print(res.Row())
	}
	return nil
}

// sanity proves the server evaluates the policy: the allowed tool is
// allowed, a tool of another group is denied with 403, and a caller
// without a valid identity gets 401.
func sanity(cc *grpc.ClientConn, v variant) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call := func(req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		resp := new(authv3.CheckResponse)
		return resp, cc.Invoke(ctx, authv3.Authorization_Check_FullMethodName, req, resp, grpc.WaitForReady(true))
	}
	resp, err := call(checkRequest(0, "echo", v.headers))
	if err != nil {
		return err
	}
	if resp.GetOkResponse() == nil {
		return fmt.Errorf("allowed tool was denied: %v", resp.GetDeniedResponse())
	}
	resp, err = call(checkRequest(0, "deploy", v.headers))
	if err != nil {
		return err
	}
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 403 {
		return fmt.Errorf("tool of another group: got HTTP %d, want 403", got)
	}
	resp, err = call(checkRequest(0, "echo", v.badHeaders))
	if err != nil {
		return err
	}
	if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 401 {
		return fmt.Errorf("caller without a valid identity: got HTTP %d, want 401", got)
	}
	return nil
}
