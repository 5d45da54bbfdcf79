package oauth

import (
	"context"
	"crypto/subtle"
	"net/http"
	"net/url"

	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/store"
)

var errConsentExpired = pageError(http.StatusBadRequest, "Request expired", "This authorization request has expired or was already answered.")

// consentCovers reports whether the user already approved this client for
// at least these scopes and servers.
func (s *Server) consentCovers(ctx context.Context, subject, clientID string, req authRequest) bool {
	c, err := s.st.GetConsent(ctx, subject, clientID)
	if err != nil {
		return false
	}
	return subset(req.Scopes, c.Scopes) && subset(req.Servers, c.Servers)
}

// serveConsent shows (GET) and answers (POST) the consent page. The POST
// must carry the page's CSRF token and come from the browser that signed
// in (SameSite cookie), so another site cannot approve on the user's
// behalf.
func (s *Server) serveConsent(w http.ResponseWriter, r *http.Request) error {
	var id string
	switch r.Method {
	case http.MethodGet:
		id = r.URL.Query().Get("id")
	case http.MethodPost:
		if err := parseBrowserForm(w, r); err != nil {
			return err
		}
		id = r.PostForm.Get("id")
	default:
		return errMethod("GET or POST")
	}
	var pc pendingConsent
	if id == "" || len(id) > 64 || s.getJSON(r.Context(), sessConsent, id, &pc) != nil {
		return errConsentExpired
	}
	if !s.sameBrowser(r, pc.Req.Browser) {
		return pageError(http.StatusForbidden, "Request refused", "This authorization was started in another browser.")
	}
	client, err := s.lookupClient(r.Context(), pc.Req.ClientID)
	if err != nil {
		return pageError(http.StatusBadRequest, "Unknown application", "The application is no longer registered.")
	}
	if r.Method == http.MethodGet {
		s.pages.render(w, http.StatusOK, "consent.html", s.consentPage(r.Context(), id, pc, client))
		return nil
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(pc.CSRF)) != 1 || pc.CSRF == "" {
		return pageError(http.StatusForbidden, "Request refused", "The consent form could not be verified. Start again from your application.")
	}
	if _, err := s.st.TakeSession(r.Context(), sessConsent, id); err != nil {
		return errConsentExpired
	}
	back := func(status int, code, desc string) error {
		return oauthError(status, code, desc).redirectTo(pc.Req.RedirectURI, pc.Req.State)
	}
	ev := store.AuditEvent{Subject: pc.Identity.Subject, ClientID: client.ID, Kind: store.KindUser,
		Details: map[string]any{"servers": pc.Req.Servers, "scopes": pc.Req.Scopes, "client_source": client.Source}}
	if r.PostForm.Get("decision") != "approve" {
		ev.Type = "consent_denied"
		if err := s.audit.RecordSync(r.Context(), ev); err != nil {
			s.log.Error("audit consent", "err", err)
		}
		return back(http.StatusForbidden, "access_denied", "the user denied the request")
	}
	ev.Type = "consent_granted"
	if err := s.audit.RecordSync(r.Context(), ev); err != nil {
		s.log.Error("audit consent", "err", err)
		return back(http.StatusInternalServerError, "server_error", "consent could not be recorded")
	}
	// Remember the union with what was approved before, so a narrower
	// request later does not ask again.
	prev, _ := s.st.GetConsent(r.Context(), pc.Identity.Subject, client.ID)
	if err := s.st.PutConsent(r.Context(), store.Consent{
		Subject: pc.Identity.Subject, ClientID: client.ID, GrantedAt: s.now().UTC(),
		Scopes: union(prev.Scopes, pc.Req.Scopes), Servers: union(prev.Servers, pc.Req.Servers),
	}); err != nil {
		s.log.Error("remember consent", "err", err)
	}
	return s.issueCode(w, r, pc)
}

func (s *Server) consentPage(ctx context.Context, id string, pc pendingConsent, c store.Client) consentPage {
	p := consentPage{
		Action: s.endpoint("/oauth/consent"), ID: id, CSRF: pc.CSRF,
		ClientName: c.Name, ClientID: c.ID, ClientSource: c.Source, Scopes: pc.Req.Scopes,
		User: pc.Identity.Subject,
	}
	if p.ClientName == "" {
		p.ClientName = "An unnamed application"
	}
	if pc.Identity.Email != "" {
		p.User = pc.Identity.Email
	}
	if u, err := url.Parse(pc.Req.RedirectURI); err == nil {
		p.RedirectHost = u.Host
		if p.RedirectHost == "" {
			p.RedirectHost = u.Scheme + ":"
		}
	}
	for i, name := range pc.Req.Servers {
		cs := consentServer{Name: name, Resource: pc.Req.Resources[i]}
		if srv, err := s.servers.GetServer(ctx, name); err == nil {
			cs.Description = srv.Description
		}
		p.Servers = append(p.Servers, cs)
	}
	return p
}

// issueCode has the grant service store the grant and a single-use
// authorization code bound to the client, redirect URI, PKCE challenge and
// resources, and sends the browser back to the client with code, state and
// iss (RFC 9207).
func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, pc pendingConsent) error {
	req := pc.Req
	g := store.Grant{
		ID: pc.GrantID, Subject: pc.Identity.Subject, Email: pc.Identity.Email, Name: pc.Identity.Name,
		Groups: pc.Identity.Groups, Claims: pc.Identity.Claims, ClientID: req.ClientID, ClientName: pc.ClientName, Kind: store.KindUser,
		Scopes: req.Scopes, Resources: req.Resources, Servers: req.Servers, Connector: s.o.ConnectorID,
		IdPSession: pc.Identity.Session,
	}
	if pc.Upstream != nil {
		g.Upstream = map[string]store.Sealed{upstreamIdP: *pc.Upstream}
	}
	c := grant.Code{ClientID: req.ClientID, Challenge: req.Challenge, Resources: req.Resources, Scopes: req.Scopes}
	if req.RedirectGiven {
		c.RedirectURI = req.RedirectURI
	}
	raw, err := s.grants.Authorize(r.Context(), g, c)
	if err != nil {
		s.log.Error("issue authorization code", "err", err)
		return oauthError(http.StatusInternalServerError, "server_error", "the authorization could not be stored").redirectTo(req.RedirectURI, req.State)
	}
	s.redirectTo(w, r, req.RedirectURI, req.State, url.Values{"code": {raw}})
	return nil
}
