package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warden-mcp/warden/internal/admin"
	"github.com/warden-mcp/warden/internal/adminauth"
	"github.com/warden-mcp/warden/internal/auditquery"
	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/policy/replay"
)

var pageNames = []string{"login", "signedin", "error", "servers", "access", "revoked", "audit", "event", "policy", "accounts", "accountrevoked"}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"join": strings.Join,
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return Ago(time.Since(t))
		},
		"pretty": func(v any) string {
			raw, _ := json.MarshalIndent(v, "", "  ")
			return string(raw)
		},
		"short": func(s string) string { return truncate(s, 12) },
	}
	out := map[string]*template.Template{}
	for _, n := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parse %s: %w", n, err)
		}
		out[n] = t
	}
	return out, nil
}

// Ago says how long ago, for people: 3d ago, 5h ago, 12m ago, 40s ago.
// The console and the CLI's tables both use it.
func Ago(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	case d >= time.Minute:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 0:
		return "just now"
	}
	return fmt.Sprintf("%ds ago", int(d.Seconds()))
}

// view is what every page template gets.
type view struct {
	Title  string
	Active string
	User   *adminauth.Principal
	CSRF   string
	// CanRevoke: the role may revoke any target; CanRevokeServers: at
	// least access to (its) servers. The API decides either way: a
	// button that is absent is not the protection.
	CanRevoke, CanRevokeServers bool
	Error                       string
	Data                        any
}

func (s *Server) render(w http.ResponseWriter, status int, page string, sess *session, data any) {
	v := view{Title: page, Active: page, Data: data}
	if sess != nil {
		v.User, v.CSRF = &sess.Principal, sess.CSRF
		v.CanRevoke = sess.Principal.Role == adminauth.RoleAdmin
		v.CanRevokeServers = sess.Principal.Can(adminauth.Revoke)
	}
	s.renderView(w, status, page, v)
}

func (s *Server) renderView(w http.ResponseWriter, status int, page string, v view) {
	var b strings.Builder
	if err := s.pages[page].Execute(&b, v); err != nil {
		s.o.Logger.Error("console: render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail shows an error page.
func (s *Server) fail(w http.ResponseWriter, _ *http.Request, sess *session, status int, msg string) {
	v := view{Title: "error", Error: msg}
	if sess != nil {
		v.User, v.CSRF = &sess.Principal, sess.CSRF
	}
	s.renderView(w, status, "error", v)
}

// apiFailed shows an error the admin API gave.
func (s *Server) apiFailed(w http.ResponseWriter, r *http.Request, sess session, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		s.fail(w, r, &sess, ae.status, ae.msg)
		return
	}
	s.o.Logger.Error("console: admin API call", "path", r.URL.Path, "err", err)
	s.fail(w, r, &sess, http.StatusInternalServerError, "Something went wrong; the log has the details.")
}

// ---- servers ----

type xdsStatus struct {
	Ready       bool      `json:"ready"`
	Version     string    `json:"version"`
	PublishedAt time.Time `json:"published_at"`
	LastError   string    `json:"last_error"`
	NACKs       uint64    `json:"nacks"`
	Nodes       []struct {
		ID      string `json:"id"`
		Streams []struct {
			ID       string            `json:"id"`
			Version  string            `json:"version"`
			Acked    map[string]string `json:"acked"`
			LastNACK *nack             `json:"last_nack"`
		} `json:"streams"`
		LastNACK *nack `json:"last_nack"`
	} `json:"nodes"`
	Skipped []struct {
		Name   string `json:"name"`
		Reason string `json:"reason"`
	} `json:"skipped"`
}

type nack struct {
	TypeURL string    `json:"type_url"`
	Version string    `json:"version"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

type serversData struct {
	Servers []admin.ServerView
	XDS     *xdsStatus
}

func (s *Server) serversPage(w http.ResponseWriter, r *http.Request, sess session) {
	var d serversData
	if err := s.call(r.Context(), sess.Principal, "GET", "/api/v1/servers", nil, &d.Servers); err != nil {
		s.apiFailed(w, r, sess, err)
		return
	}
	var x xdsStatus
	if err := s.call(r.Context(), sess.Principal, "GET", "/api/v1/xds", nil, &x); err == nil {
		d.XDS = &x
	}
	s.render(w, http.StatusOK, "servers", &sess, d)
}

// ---- access ----

type accessRow struct {
	Subject, Name, Email string
	Kind                 store.Kind
	Groups               []string
	Cells                map[string][]admin.AccessEntry
	// Accounts are the providers the identity has connected an account at.
	Accounts []string
}

type clientRef struct{ ID, Name, Source string }

type accessData struct {
	Filter     admin.AccessFilter
	Servers    []string
	Rows       []accessRow
	Clients    []clientRef
	Connectors []string
	Entries    int
	// ShowAccounts: the server brokers upstream accounts.
	ShowAccounts bool
}

func (s *Server) accessPage(w http.ResponseWriter, r *http.Request, sess session) {
	f := admin.AccessFilterOf(r)
	q := url.Values{}
	for k, v := range map[string]string{"user": f.User, "group": f.Group, "server": f.Server, "client": f.Client} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var entries []admin.AccessEntry
	if err := s.call(r.Context(), sess.Principal, "GET", "/api/v1/access?"+q.Encode(), nil, &entries); err != nil {
		s.apiFailed(w, r, sess, err)
		return
	}
	d := accessData{Filter: f, Entries: len(entries)}
	rows := map[string]*accessRow{}
	servers, clients, connectors := map[string]bool{}, map[string]clientRef{}, map[string]bool{}
	for _, e := range entries {
		row := rows[e.Subject]
		if row == nil {
			row = &accessRow{Subject: e.Subject, Name: e.Name, Email: e.Email, Kind: e.Kind, Groups: e.Groups, Cells: map[string][]admin.AccessEntry{}}
			rows[e.Subject] = row
		}
		row.Cells[e.Server] = append(row.Cells[e.Server], e)
		servers[e.Server] = true
		clients[e.ClientID] = clientRef{ID: e.ClientID, Name: e.ClientName, Source: e.ClientSource}
		if e.Connector != "" {
			connectors[e.Connector] = true
		}
	}
	accounts := s.connectedAccounts(r, sess.Principal)
	d.ShowAccounts = accounts != nil
	for _, row := range rows {
		row.Accounts = accounts[row.Subject]
		d.Rows = append(d.Rows, *row)
	}
	slices.SortFunc(d.Rows, func(a, b accessRow) int { return strings.Compare(a.Subject, b.Subject) })
	for sv := range servers {
		d.Servers = append(d.Servers, sv)
	}
	slices.Sort(d.Servers)
	for _, c := range clients {
		d.Clients = append(d.Clients, c)
	}
	slices.SortFunc(d.Clients, func(a, b clientRef) int { return strings.Compare(a.ID, b.ID) })
	for c := range connectors {
		d.Connectors = append(d.Connectors, c)
	}
	slices.Sort(d.Connectors)
	s.render(w, http.StatusOK, "access", &sess, d)
}

// ---- revoke ----

type revokedData struct {
	What   string
	Result grant.Result
	Error  string
	Back   string
}

// revokeReason is recorded with every revocation made in the console.
const revokeReason = "revoked in the console"

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, sess session) {
	kind, value := r.PostForm.Get("target"), strings.TrimSpace(r.PostForm.Get("value"))
	var t grant.Target
	switch kind {
	case "grant":
		t.GrantID = value
	case "user":
		t.Subject = value
	case "client":
		t.ClientID = value
	case "server":
		t.Server = value
	case "connector":
		t.Connector = value
	default:
		s.fail(w, r, &sess, http.StatusBadRequest, "Unknown revocation target.")
		return
	}
	if value == "" {
		s.fail(w, r, &sess, http.StatusBadRequest, "Nothing to revoke was named.")
		return
	}
	back := r.PostForm.Get("back")
	if !strings.HasPrefix(back, "/ui/") || strings.HasPrefix(back, "//") {
		back = "/ui/access"
	}
	d := revokedData{What: kind + " " + value, Back: back}
	err := s.call(r.Context(), sess.Principal, "POST", "/api/v1/revoke", admin.RevokeRequest{Target: t, Reason: revokeReason}, &d.Result)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusForbidden {
			s.fail(w, r, &sess, http.StatusForbidden, ae.msg)
			return
		}
		s.apiFailed(w, r, sess, err)
		return
	}
	s.render(w, http.StatusOK, "revoked", &sess, d)
}

// ---- audit ----

type auditData struct {
	Query  map[string]string
	Fields []string
	Page   auditquery.Page
	// Next is the link to the next (older) page; CSV and NDJSON the
	// export links of the same query.
	Next, CSV, NDJSON string
}

func auditParams(r *http.Request) url.Values {
	in := r.URL.Query()
	q := url.Values{}
	for _, k := range auditquery.Fields {
		if v := strings.TrimSpace(in.Get(k)); v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, sess session) {
	q := auditParams(r)
	d := auditData{Query: map[string]string{}, Fields: auditquery.Fields}
	for k := range q {
		d.Query[k] = q.Get(k)
	}
	api := url.Values{}
	for k, v := range q {
		api[k] = v
	}
	api.Set("limit", "50")
	if b := r.URL.Query().Get("before"); b != "" {
		api.Set("before", b)
	}
	err := s.call(r.Context(), sess.Principal, "GET", "/api/v1/audit/search?"+api.Encode(), nil, &d.Page)
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusBadRequest {
		s.renderView(w, http.StatusBadRequest, "audit", view{Active: "audit", User: &sess.Principal, CSRF: sess.CSRF, Error: ae.msg, Data: d})
		return
	}
	if err != nil {
		s.apiFailed(w, r, sess, err)
		return
	}
	if d.Page.Next != 0 {
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("before", strconv.FormatUint(d.Page.Next, 10))
		d.Next = "/ui/audit?" + next.Encode()
	}
	for _, f := range []string{"csv", "ndjson"} {
		e := url.Values{}
		for k, v := range q {
			e[k] = v
		}
		e.Set("format", f)
		if f == "csv" {
			d.CSV = "/ui/audit/export?" + e.Encode()
		} else {
			d.NDJSON = "/ui/audit/export?" + e.Encode()
		}
	}
	s.render(w, http.StatusOK, "audit", &sess, d)
}

// auditExport streams the API's export of the same query to the browser.
func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, sess session) {
	q := auditParams(r)
	q.Set("format", r.URL.Query().Get("format"))
	req, err := request(r.Context(), sess.Principal, "GET", "/api/v1/audit/export?"+q.Encode(), nil)
	if err != nil {
		s.apiFailed(w, r, sess, err)
		return
	}
	s.o.API.ServeHTTP(w, req)
}

func (s *Server) eventPage(w http.ResponseWriter, r *http.Request, sess session) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		s.fail(w, r, &sess, http.StatusNotFound, "No such event.")
		return
	}
	var ev store.AuditEvent
	if err := s.call(r.Context(), sess.Principal, "GET", "/api/v1/audit/events/"+strconv.FormatUint(seq, 10), nil, &ev); err != nil {
		s.apiFailed(w, r, sess, err)
		return
	}
	s.render(w, http.StatusOK, "event", &sess, ev)
}

// ---- policy ----

type policyStatus struct {
	Revision           string    `json:"revision"`
	Source             string    `json:"source"`
	LoadedAt           time.Time `json:"loaded_at"`
	Files              []string  `json:"files"`
	LastError          string    `json:"last_error"`
	LastErrorAt        time.Time `json:"last_error_at"`
	Memoized           bool      `json:"memoized"`
	NotMemoizedBecause string    `json:"not_memoized_because"`
}

type policyData struct {
	Status      *policyStatus
	Form        struct{ Name, Source, Since, Server, Limit string }
	Result      *replay.Result
	WhatIfError string
}

func (s *Server) policyData(r *http.Request, sess session) (policyData, error) {
	var d policyData
	d.Form.Name, d.Form.Since, d.Form.Limit = "candidate.rego", "24h", "1000"
	var st policyStatus
	if err := s.call(r.Context(), sess.Principal, "GET", "/api/v1/policy", nil, &st); err != nil {
		return d, err
	}
	d.Status = &st
	return d, nil
}

func (s *Server) policyPage(w http.ResponseWriter, r *http.Request, sess session) {
	d, err := s.policyData(r, sess)
	if err != nil {
		s.apiFailed(w, r, sess, err)
		return
	}
	s.render(w, http.StatusOK, "policy", &sess, d)
}

// whatIf re-evaluates the recorded decisions against a candidate policy
// through the policy replay API and lists what would change.
func (s *Server) whatIf(w http.ResponseWriter, r *http.Request, sess session) {
	d, err := s.policyData(r, sess)
	if err != nil {
		s.apiFailed(w, r, sess, err)
		return
	}
	f := r.PostForm
	// Browsers submit a textarea's line breaks as CRLF (HTML's form
	// encoding); the files this stands for have LF.
	d.Form.Name, d.Form.Source = strings.TrimSpace(f.Get("name")), strings.ReplaceAll(f.Get("source"), "\r\n", "\n")
	d.Form.Since, d.Form.Server, d.Form.Limit = strings.TrimSpace(f.Get("since")), strings.TrimSpace(f.Get("server")), strings.TrimSpace(f.Get("limit"))
	if d.Form.Name == "" {
		d.Form.Name = "candidate.rego"
	}
	if !strings.HasSuffix(d.Form.Name, ".rego") {
		d.Form.Name += ".rego"
	}
	req := replay.Request{Modules: map[string]string{d.Form.Name: d.Form.Source}, Since: d.Form.Since, Server: d.Form.Server}
	if d.Form.Limit != "" {
		n, err := strconv.Atoi(d.Form.Limit)
		if err != nil || n <= 0 {
			d.WhatIfError = "The limit must be a positive number."
			s.render(w, http.StatusBadRequest, "policy", &sess, d)
			return
		}
		req.Limit = n
	}
	if strings.TrimSpace(d.Form.Source) == "" {
		d.WhatIfError = "Paste the candidate policy (Rego) to compare."
		s.render(w, http.StatusBadRequest, "policy", &sess, d)
		return
	}
	var res replay.Result
	err = s.call(r.Context(), sess.Principal, "POST", "/api/v1/policy/replay", req, &res)
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		d.WhatIfError = ae.msg
		s.render(w, ae.status, "policy", &sess, d)
		return
	case err != nil:
		s.apiFailed(w, r, sess, err)
		return
	}
	d.Result = &res
	s.render(w, http.StatusOK, "policy", &sess, d)
}
