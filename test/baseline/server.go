package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/uuid"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/logging"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
	"github.com/open-policy-agent/opa/v1/topdown/cache"
	"github.com/open-policy-agent/opa/v1/topdown/print"
	"github.com/open-policy-agent/opa/v1/util"
	"github.com/open-policy-agent/opa/v1/version"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// plugin is a stand-in for opa-envoy-plugin's envoy_ext_authz_grpc plugin
// (internal/internal.go, envoyauth/*.go), reduced to what runs per Check
// with decision logging off: a fresh decision ID and metrics, a read
// transaction on the in-memory store, request → input conversion,
// ast.InterfaceToValue, evaluation of a query prepared once, and a
// response built from the decision. There is no plugin manager, bundle
// downloader, status or decision-log plugin; none of those do work on the
// Check path when unconfigured.
type plugin struct {
	authv3.UnimplementedAuthorizationServer

	query    ast.Body
	compiler *ast.Compiler
	store    storage.Store
	runtime  *ast.Term
	logger   logging.Logger
	iqCache  cache.InterQueryCache

	once  sync.Once
	pq    *rego.PreparedEvalQuery
	pqErr error
}

// loadPlugin compiles every .rego file in dir and loads dir/data.json into
// an in-memory store configured as `opa run` configures its default store.
// path is the decision path, e.g. "envoy/authz/result" (the plugin's
// `path` setting).
func loadPlugin(ctx context.Context, dir, path string, logger logging.Logger) (*plugin, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read policy dir: %w", err)
	}
	modules := map[string]*ast.Module{}
	data := map[string]any{}
	for _, e := range entries {
		name := filepath.Join(dir, e.Name())
		switch {
		case strings.HasSuffix(e.Name(), ".rego"):
			src, err := os.ReadFile(name)
			if err != nil {
				return nil, err
			}
			m, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				return nil, fmt.Errorf("parse %s: %w", name, err)
			}
			modules[name] = m
		case e.Name() == "data.json":
			raw, err := os.ReadFile(name)
			if err != nil {
				return nil, err
			}
			if err := util.UnmarshalJSON(raw, &data); err != nil {
				return nil, fmt.Errorf("parse %s: %w", name, err)
			}
		}
	}
	if len(modules) == 0 {
		return nil, fmt.Errorf("no .rego files in %s", dir)
	}
	compiler := ast.NewCompiler().WithEnablePrintStatements(true)
	if compiler.Compile(modules); compiler.Failed() {
		return nil, fmt.Errorf("compile policy: %w", compiler.Errors)
	}
	query, err := ast.ParseBody(pathToDataRef(path).String())
	if err != nil {
		return nil, fmt.Errorf("decision path %q: %w", path, err)
	}
	cacheCfg, err := cache.ParseCachingConfig(nil)
	if err != nil {
		return nil, err
	}
	store := inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(false))
	return &plugin{
		query:    query,
		compiler: compiler,
		store:    store,
		runtime:  ast.NewTerm(ast.NewObject([2]*ast.Term{ast.StringTerm("version"), ast.StringTerm(version.Version)})),
		logger:   logger,
		iqCache:  cache.NewInterQueryCacheWithContext(ctx, cacheCfg),
	}, nil
}

// pathToDataRef turns "envoy/authz/result" into data.envoy.authz.result.
func pathToDataRef(path string) ast.Ref {
	ref := ast.Ref{ast.DefaultRootDocument}
	for _, p := range strings.Split(path, "/") {
		if p != "" {
			ref = append(ref, ast.StringTerm(p))
		}
	}
	return ref
}

// newGRPCServer registers the plugin on a gRPC server built as the plugin
// builds it: only its default size limits. streamWorkers > 0 adds
// grpc.NumStreamWorkers, which the plugin does not set (it has no option
// for it); it exists to show how much of the gap is gRPC tuning alone.
func newGRPCServer(p *plugin, streamWorkers int) *grpc.Server {
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(4 << 20), grpc.MaxSendMsgSize(1<<31 - 1)}
	if streamWorkers > 0 {
		opts = append(opts, grpc.NumStreamWorkers(uint32(streamWorkers)))
	}
	s := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(s, p)
	return s
}

func serve(ctx context.Context, addr string, p *plugin, streamWorkers int) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := newGRPCServer(p, streamWorkers)
	go func() { <-ctx.Done(); s.Stop() }()
	return s.Serve(l)
}

// evalResult mirrors envoyauth.EvalResult: what one evaluation carries.
type evalResult struct {
	decisionID string
	metrics    metrics.Metrics
	txn        storage.Transaction
	decision   any
}

// Check is envoy.service.auth.v3.Authorization/Check, following the
// plugin's check(): an error from input conversion is a 400 denial, an
// evaluation error is a gRPC error (Envoy then fails closed).
func (p *plugin) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	res := &evalResult{metrics: metrics.New(), decisionID: uuid.NewString()}
	res.metrics.Timer(metrics.ServerHandler).Start()
	txn, err := p.store.NewTransaction(ctx, storage.TransactionParams{})
	if err != nil {
		return nil, err
	}
	res.txn = txn
	defer func() {
		_ = res.metrics.Timer(metrics.ServerHandler).Stop()
		// The plugin logs the decision here; with no decision-log plugin
		// configured logs.Lookup returns nil and nothing is done.
		p.store.Abort(ctx, txn)
	}()
	logger := p.logger.WithFields(map[string]any{"decision-id": res.decisionID})

	input, err := requestToInput(req)
	if err != nil {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED), Message: err.Error()},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_BadRequest}, Body: err.Error(),
			}},
		}, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("check request timed out before query execution: %w", ctx.Err())
	}
	inputValue, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, err
	}
	if err := p.eval(ctx, inputValue, res, logger); err != nil {
		return nil, err
	}
	return buildResponse(res)
}

// eval follows envoyauth.Eval: the query is prepared once (the plugin's
// CreatePreparedQueryOnce) with the same options, and evaluated with the
// same per-call options.
func (p *plugin) eval(ctx context.Context, input ast.Value, res *evalResult, logger logging.Logger) error {
	if logger.GetLevel() == logging.Debug {
		logger.WithFields(map[string]any{"input": input, "query": p.query.String(), "txn": res.txn.ID()}).Debug("Executing policy query.")
	}
	p.once.Do(func() {
		pq, err := rego.New(
			rego.Metrics(res.metrics),
			rego.ParsedQuery(p.query),
			rego.Compiler(p.compiler),
			rego.Store(p.store),
			rego.Transaction(res.txn),
			rego.Runtime(p.runtime),
			rego.EnablePrintStatements(true),
			rego.DistributedTracingOpts(nil),
		).PrepareForEval(context.Background())
		p.pq, p.pqErr = &pq, err
	})
	if p.pqErr != nil {
		return p.pqErr
	}
	var ndb builtins.NDBCache // nd_builtin_cache is off by default
	rs, err := p.pq.Eval(ctx,
		rego.EvalParsedInput(input),
		rego.EvalTransaction(res.txn),
		rego.EvalMetrics(res.metrics),
		rego.EvalInterQueryBuiltinCache(p.iqCache),
		rego.EvalPrintHook(printHook{logger}),
		rego.EvalNDBuiltinCache(ndb),
	)
	switch {
	case err != nil:
		return err
	case len(rs) == 0:
		return errors.New("undefined decision")
	case len(rs) > 1:
		return errors.New("multiple evaluation results")
	}
	res.decision = rs[0].Expressions[0].Value
	return nil
}

type printHook struct{ logger logging.Logger }

func (h printHook) Print(pctx print.Context, msg string) error {
	h.logger.Info("%v: %s", pctx.Location, msg)
	return nil
}

// buildResponse turns a decision into a CheckResponse the way the plugin
// does: a boolean is just the gRPC status; an object with "allowed" also
// carries headers, dynamic metadata and, on allow, headers to remove,
// response headers to add and query parameters to remove, or on deny a
// body and HTTP status. decision_id is always added to dynamic metadata.
func buildResponse(res *evalResult) (*authv3.CheckResponse, error) {
	allowed, err := isAllowed(res.decision)
	if err != nil {
		return nil, fmt.Errorf("failed to get response status: %w", err)
	}
	resp := &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED)}}
	if allowed {
		resp.Status.Code = int32(code.Code_OK)
	}
	if d, ok := res.decision.(map[string]any); ok {
		headers, err := headerOptions(d["headers"])
		if err != nil {
			return nil, fmt.Errorf("failed to get response headers: %w", err)
		}
		if md, ok := d["dynamic_metadata"]; ok {
			m, ok := md.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("dynamic_metadata is %T, not an object", md)
			}
			if resp.DynamicMetadata, err = structpb.NewStruct(m); err != nil {
				return nil, err
			}
		}
		if allowed {
			remove, err := stringList(d["request_headers_to_remove"])
			if err != nil {
				return nil, err
			}
			toClient, err := headerOptions(d["response_headers_to_add"])
			if err != nil {
				return nil, err
			}
			qp, err := stringList(d["query_parameters_to_remove"])
			if err != nil {
				return nil, err
			}
			resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: headers, HeadersToRemove: remove, ResponseHeadersToAdd: toClient, QueryParametersToRemove: qp,
			}}
		} else {
			body, _ := d["body"].(string)
			st, err := httpStatus(d["http_status"])
			if err != nil {
				return nil, err
			}
			resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Headers: headers, Body: body, Status: &typev3.HttpStatus{Code: typev3.StatusCode(st)},
			}}
		}
	}
	if resp.DynamicMetadata == nil {
		resp.DynamicMetadata = &structpb.Struct{Fields: make(map[string]*structpb.Value, 1)}
	}
	resp.DynamicMetadata.Fields["decision_id"] = structpb.NewStringValue(res.decisionID)
	return resp, nil
}

func isAllowed(decision any) (bool, error) {
	switch d := decision.(type) {
	case bool:
		return d, nil
	case map[string]any:
		v, ok := d["allowed"]
		if !ok {
			return false, errors.New(`decision has no "allowed" key`)
		}
		b, ok := v.(bool)
		if !ok {
			return false, fmt.Errorf("allowed is %T, not a boolean", v)
		}
		return b, nil
	}
	return false, fmt.Errorf("illegal value for policy evaluation result: %T", decision)
}

// headerOptions accepts an object of header → string or list of strings,
// or a list of such objects, as the plugin does.
func headerOptions(v any) ([]*corev3.HeaderValueOption, error) {
	if v == nil {
		return nil, nil
	}
	var out []*corev3.HeaderValueOption
	add := func(m map[string]any) error {
		for k, val := range m {
			switch val := val.(type) {
			case string:
				out = append(out, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: val}})
			case []any:
				for _, e := range val {
					s, ok := e.(string)
					if !ok {
						return fmt.Errorf("header %q value is %T", k, e)
					}
					out = append(out, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: s}})
				}
			default:
				return fmt.Errorf("header %q value is %T", k, val)
			}
		}
		return nil
	}
	switch v := v.(type) {
	case map[string]any:
		return out, add(v)
	case []any:
		for _, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("headers entry is %T, not an object", e)
			}
			if err := add(m); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("headers is %T, not an object", v)
}

func stringList(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("expected a list of strings, got %T", v)
	}
	out := make([]string, len(l))
	for i, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("expected a string, got %T", e)
		}
		out[i] = s
	}
	return out, nil
}

func httpStatus(v any) (int, error) {
	if v == nil {
		return http.StatusForbidden, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("http_status is %T, not a number", v)
	}
	c, err := n.Int64()
	if err != nil || http.StatusText(int(c)) == "" {
		return 0, fmt.Errorf("invalid HTTP status %v", v)
	}
	if _, ok := typev3.StatusCode_name[int32(c)]; !ok {
		return 0, fmt.Errorf("invalid HTTP status %v", v)
	}
	return int(c), nil
}
