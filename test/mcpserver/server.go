// Package mcpserver is a small MCP server (github.com/modelcontextprotocol/
// go-sdk, streamable HTTP) used as an upstream in end-to-end tests. By
// default it accepts only the JWT Warden mints: it verifies the signature
// against Warden's JWKS, the issuer, the audience (its own resource URL)
// and the expiry; Options.Verify replaces that check for the brokered
// credential modes. Its whoami tool reports the identity it saw, so a test
// can prove what reached the upstream.
//
// Test code only; never imported by the product.
package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Options configure the server.
type Options struct {
	// JWKSURL is Warden's /oauth/jwks.
	JWKSURL string
	// Issuer and Audience are the expected iss and aud.
	Issuer   string
	Audience string
	// Stateless serves MCP 2026-07-28 (stateless, no sessions; the go-sdk
	// serves that revision only in this mode) beside the 2025 revisions.
	Stateless bool
	// JSONResponse answers POSTs with application/json instead of an SSE
	// stream.
	JSONResponse bool
	// PageSize, when positive, is the most items one list result holds
	// (the go-sdk then answers with a nextCursor), so that a test can page
	// through a filtered list.
	PageSize int
	// Verify, when set, replaces the check of Warden's JWT (JWKSURL,
	// Issuer and Audience are then unused): an upstream that takes
	// another issuer's tokens, as in the brokered credential modes
	// (docs/credentials.md), where the token is the IdP's or a third
	// party's and only its issuer can tell what it is worth.
	Verify func(ctx context.Context, token string) (Seen, error)
	// AllowAnonymous serves requests without an Authorization header,
	// with no identity (whoami fails): what a provider-mode upstream gets
	// from Warden for the lists of a user who has not connected an
	// account. A header that is present must still verify.
	AllowAnonymous bool
	Logger         *slog.Logger
}

// Seen is one verified request's identity.
type Seen struct {
	Subject  string
	ClientID string
	Scope    string
	Audience []string
	Expiry   time.Time
	JWTID    string
}

// Server is the handler plus what it observed.
type Server struct {
	http.Handler
	mu      sync.Mutex
	seen    []Seen
	rejects int
	srv     *mcp.Server
}

// SetToolDescription changes the description of a tool the server lists
// (the "rug pull" tool pinning catches): the tool is added again under
// its name, which replaces it.
func (s *Server) SetToolDescription(name, description string) {
	mcp.AddTool(s.srv, &mcp.Tool{Name: name, Description: description}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + " done"}}}, nil, nil
	})
}

// Seen returns the identities verified so far.
func (s *Server) Seen() []Seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Seen(nil), s.seen...)
}

// Rejects counts requests whose bearer token did not verify.
func (s *Server) Rejects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejects
}

// New builds the server.
func New(ctx context.Context, o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	check := o.Verify
	if check == nil {
		var err error
		if check, err = wardenJWT(ctx, o); err != nil {
			return nil, err
		}
	}
	s := &Server{}
	verifier := func(ctx context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		seen, err := check(ctx, token)
		if errors.Is(err, errKeys) {
			// Not the token's fault: a 500, not counted as a reject.
			return nil, err
		}
		if err != nil {
			s.mu.Lock()
			s.rejects++
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: %v", auth.ErrInvalidToken, err)
		}
		s.mu.Lock()
		s.seen = append(s.seen, seen)
		s.mu.Unlock()
		return &auth.TokenInfo{UserID: seen.Subject, Scopes: strings.Fields(seen.Scope), Expiration: seen.Expiry,
			Extra: map[string]any{"seen": seen}}, nil
	}

	srv := mcp.NewServer(&mcp.Implementation{Name: "warden-test-upstream", Version: "1.0.0"}, &mcp.ServerOptions{PageSize: o.PageSize})
	type echoIn struct {
		Message string `json:"message" jsonschema:"text to echo"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "echo", Description: "Echo a message"}, func(ctx context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Message}}}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "whoami", Description: "Report the identity Warden asserted"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		ti := req.Extra.TokenInfo
		if ti == nil {
			return nil, nil, errors.New("no verified identity")
		}
		seen, _ := ti.Extra["seen"].(Seen)
		text := fmt.Sprintf("sub=%s client_id=%s aud=%s scope=%s", seen.Subject, seen.ClientID, strings.Join(seen.Audience, ","), seen.Scope)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
	})
	type sqlIn struct {
		Query string `json:"query"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "run_sql", Description: "Run a SQL statement (pretend)"}, func(ctx context.Context, _ *mcp.CallToolRequest, in sqlIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ran: " + in.Query}}}, nil, nil
	})
	type countIn struct {
		N int `json:"n"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "countdown", Description: "Send n progress notifications on the response stream, then answer"}, func(ctx context.Context, req *mcp.CallToolRequest, in countIn) (*mcp.CallToolResult, any, error) {
		tok := req.Params.GetProgressToken()
		for i := 1; i <= in.N; i++ {
			if tok != nil {
				_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: float64(i), Total: float64(in.N)})
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("counted %d", in.N)}}}, nil, nil
	})
	type noteIn struct {
		Text string `json:"text"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "write_note", Description: "Write a note (policy asks for scope data:write: step-up)"}, func(ctx context.Context, _ *mcp.CallToolRequest, in noteIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "noted: " + in.Text}}}, nil, nil
	})
	type regionIn struct {
		Region string `json:"region"`
	}
	// region_info mirrors its argument into Mcp-Param-Region (x-mcp-header,
	// MCP 2026-07-28): clients of that revision send the header, and the
	// SDK's server checks it against the body.
	mcp.AddTool(srv, &mcp.Tool{Name: "region_info", Description: "Describe a region", InputSchema: map[string]any{
		"type": "object", "required": []string{"region"},
		"properties": map[string]any{"region": map[string]any{"type": "string", "x-mcp-header": "Region"}},
	}}, func(ctx context.Context, _ *mcp.CallToolRequest, in regionIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "region " + in.Region}}}, nil, nil
	})
	// admin_reset is for admins only (the e2e policy refuses it to others,
	// and the response path hides it from their lists).
	mcp.AddTool(srv, &mcp.Tool{Name: "admin_reset", Description: "Reset the server's state (admins only)"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "reset"}}}, nil, nil
	})
	srv.AddResource(&mcp.Resource{URI: "file:///teams/data/readme.md", Name: "readme", MIMEType: "text/markdown"},
		func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/markdown", Text: "# data team"}}}, nil
		})
	// Under file:///teams/admin/ are the admins' resources and templates,
	// and admin_briefing is the admins' prompt: the e2e policy refuses them
	// to others, and the response path hides them from their lists.
	srv.AddResource(&mcp.Resource{URI: "file:///teams/admin/payroll.md", Name: "payroll", MIMEType: "text/markdown"},
		func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/markdown", Text: "# payroll"}}}, nil
		})
	for _, team := range []string{"data", "admin"} {
		srv.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: "file:///teams/" + team + "/notes/{name}", Name: team + "-notes", MIMEType: "text/plain"},
			func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
				return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: "note " + req.Params.URI}}}, nil
			})
	}
	srv.AddPrompt(&mcp.Prompt{Name: "greet", Description: "Greet someone"}, func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "hello"}}}}, nil
	})
	srv.AddPrompt(&mcp.Prompt{Name: "admin_briefing", Description: "Brief an admin (admins only)"}, func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "briefing"}}}}, nil
	})

	s.srv = srv
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Logger: o.Logger, DisableLocalhostProtection: true, Stateless: o.Stateless, JSONResponse: o.JSONResponse})
	// An opaque token checked at its issuer (Verify) has no expiry the
	// server can see: the issuer's answer is the check.
	authed := auth.RequireBearerToken(verifier, &auth.RequireBearerTokenOptions{AllowMissingExpiration: o.Verify != nil})(h)
	s.Handler = authed
	if o.AllowAnonymous {
		s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") == "" {
				h.ServeHTTP(w, r)
				return
			}
			authed.ServeHTTP(w, r)
		})
	}
	return s, nil
}

var errKeys = errors.New("fetch JWKS")

// wardenJWT is the default check: a JWT Warden signed for this server.
func wardenJWT(ctx context.Context, o Options) (func(context.Context, string) (Seen, error), error) {
	cache := jwk.NewCache(ctx)
	if err := cache.Register(o.JWKSURL, jwk.WithMinRefreshInterval(time.Second)); err != nil {
		return nil, err
	}
	return func(ctx context.Context, token string) (Seen, error) {
		set, err := cache.Get(ctx, o.JWKSURL)
		if err != nil {
			return Seen{}, fmt.Errorf("%w: %v", errKeys, err)
		}
		t, err := jwt.Parse([]byte(token), jwt.WithKeySet(set), jwt.WithValidate(true),
			jwt.WithIssuer(o.Issuer), jwt.WithAudience(o.Audience), jwt.WithAcceptableSkew(2*time.Second))
		if err != nil {
			return Seen{}, err
		}
		seen := Seen{Subject: t.Subject(), Audience: t.Audience(), Expiry: t.Expiration(), JWTID: t.JwtID()}
		if v, ok := t.Get("client_id"); ok {
			seen.ClientID, _ = v.(string)
		}
		if v, ok := t.Get("scope"); ok {
			seen.Scope, _ = v.(string)
		}
		return seen, nil
	}, nil
}
