package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/warden-mcp/warden/internal/store"
)

// cimdFetcher fetches Client ID Metadata Documents. The client_id URL is
// attacker-chosen, so the fetch is guarded against SSRF: https only, the
// connected address (after DNS resolution, so rebinding cannot dodge it)
// must be public unless configured otherwise, no redirects, no proxy,
// bounded size and time.
//
// Fetches are triggered by unauthenticated requests, so failures are
// remembered for a while (one broken document is fetched once per
// FailureCache, however many requests name it) and fetches to one host
// are rate limited.
type cimdFetcher struct {
	cfg    CIMD
	client *http.Client
	now    func() time.Time
	failed *lru.Cache[string, fetchFailure]
	hosts  *limiter
}

// fetchFailure is a remembered failed fetch, on the server's clock.
type fetchFailure struct {
	err error
	at  time.Time
}

// cimdCacheSize bounds the failure cache and the per-host limiter.
const cimdCacheSize = 4096

func newCIMDFetcher(cfg CIMD, base *http.Client, now func() time.Time) *cimdFetcher {
	var tr *http.Transport
	if bt, ok := base.Transport.(*http.Transport); ok {
		tr = bt.Clone()
	} else {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	// A proxy would make the guard see the proxy's address instead of the
	// target's.
	tr.Proxy = nil
	d := &net.Dialer{Timeout: cfg.Timeout, Control: dialGuard(cfg.AllowPrivateAddresses)}
	tr.DialContext = d.DialContext
	return &cimdFetcher{
		cfg: cfg,
		client: &http.Client{
			Transport: tr,
			Timeout:   cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return errors.New("client metadata documents are not fetched across redirects")
			},
		},
		now:    now,
		failed: mustLRU[string, fetchFailure](cimdCacheSize),
		hosts:  newLimiter(cfg.FetchesPerHostPerMinute, cimdCacheSize, now),
	}
}

var errForbiddenAddress = errors.New("address is not public")

// dialGuard refuses connections to loopback, private, link-local,
// shared (CGNAT), unspecified and multicast addresses.
func dialGuard(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		if allowPrivate {
			return nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: %s", errForbiddenAddress, address)
		}
		if !publicAddr(ap.Addr()) {
			return fmt.Errorf("%w: %s", errForbiddenAddress, ap.Addr())
		}
		return nil
	}
}

var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
}

func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// validCIMDURL applies the metadata document rules to a client_id: https,
// a path, no fragment, credentials or dot segments.
func validCIMDURL(id string) error {
	u, err := url.Parse(id)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return errors.New("client_id URL must be https")
	}
	if u.Fragment != "" || u.User != nil || u.Path == "" || u.Path == "/" {
		return errors.New("client_id URL must have a path and no fragment or user info")
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return errors.New("client_id URL must not contain dot segments")
		}
	}
	return nil
}

// cimdClient returns the client for a metadata document URL, from the
// store while its cache lifetime lasts, otherwise fetched anew.
func (s *Server) cimdClient(ctx context.Context, id string) (store.Client, error) {
	if err := validCIMDURL(id); err != nil {
		return store.Client{}, fmt.Errorf("%v: %w", err, store.ErrNotFound)
	}
	if c, err := s.st.GetClient(ctx, id); err == nil {
		return c, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return store.Client{}, err
	}
	m, ttl, err := s.cimd.get(ctx, id)
	if err != nil {
		s.metrics.registrations.WithLabelValues(sourceCIMD, "invalid").Inc()
		s.log.Info("client metadata document refused", "client_id", id, "err", err)
		return store.Client{}, fmt.Errorf("client metadata document: %v: %w", err, store.ErrNotFound)
	}
	now := s.now().UTC()
	c := store.Client{
		ID: id, Name: m.ClientName, RedirectURIs: m.RedirectURIs, GrantTypes: m.GrantTypes,
		ResponseTypes: m.ResponseTypes, TokenEndpointAuthMethod: authNone, Scope: m.Scope,
		ClientURI: m.ClientURI, LogoURI: m.LogoURI, Kind: store.KindUser, Source: sourceCIMD,
		CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	c.Metadata, _ = json.Marshal(m)
	err = s.st.CreateClient(ctx, c)
	if errors.Is(err, store.ErrAlreadyExists) {
		// An expired cache entry not yet purged, or a concurrent fetch.
		err = s.st.UpdateClient(ctx, id, func(store.Client) (store.Client, error) { return c, nil })
	}
	if err != nil {
		return store.Client{}, fmt.Errorf("cache client metadata document: %w", err)
	}
	s.metrics.registrations.WithLabelValues(sourceCIMD, "fetched").Inc()
	if err := s.audit.RecordSync(ctx, store.AuditEvent{Type: "client_registered", ClientID: id, Kind: store.KindUser, Details: map[string]any{
		"source": sourceCIMD, "name": c.Name, "redirect_hosts": redirectHosts(c.RedirectURIs), "cache_seconds": int(ttl.Seconds()),
	}}); err != nil {
		return store.Client{}, err
	}
	return c, nil
}

// errFetchLimited: too many fetches to one host.
var errFetchLimited = errors.New("too many client metadata document fetches from this host; retry later")

// get fetches a document unless a recent fetch of it failed or its host
// had too many fetches.
func (f *cimdFetcher) get(ctx context.Context, id string) (clientMetadata, time.Duration, error) {
	if ff, ok := f.failed.Get(id); ok && f.now().Sub(ff.at) < f.cfg.FailureCache {
		return clientMetadata{}, 0, fmt.Errorf("failed recently: %w", ff.err)
	}
	u, _ := url.Parse(id)
	if !f.hosts.allow(strings.ToLower(u.Hostname())) {
		return clientMetadata{}, 0, errFetchLimited
	}
	m, ttl, err := f.fetch(ctx, id)
	if err != nil && ctx.Err() == nil {
		f.failed.Add(id, fetchFailure{err: err, at: f.now()})
	}
	return m, ttl, err
}

// fetch downloads and validates one document and says how long to cache it.
func (f *cimdFetcher) fetch(ctx context.Context, id string) (clientMetadata, time.Duration, error) {
	var m clientMetadata
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return m, 0, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return m, 0, fmt.Errorf("fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, 0, fmt.Errorf("fetch answered %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(f.cfg.MaxBytes)+1))
	if err != nil {
		return m, 0, fmt.Errorf("read: %w", err)
	}
	if len(body) > f.cfg.MaxBytes {
		return m, 0, fmt.Errorf("document exceeds %d bytes", f.cfg.MaxBytes)
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return m, 0, errors.New("document is not a JSON object")
	}
	if m.ClientID != id {
		return m, 0, fmt.Errorf("document client_id %q does not equal its URL", m.ClientID)
	}
	if e := m.normalize(true); e != nil {
		return m, 0, errors.New(e.Description)
	}
	if len(m.RedirectURIs) == 0 {
		return m, 0, errors.New("document has no redirect_uris")
	}
	return m, f.cacheFor(resp.Header.Get("Cache-Control")), nil
}

// cacheFor derives the cache lifetime from Cache-Control, clamped to the
// configured bounds.
func (f *cimdFetcher) cacheFor(cc string) time.Duration {
	ttl := f.cfg.DefaultCache
	for _, d := range strings.Split(cc, ",") {
		d = strings.TrimSpace(strings.ToLower(d))
		switch {
		case d == "no-store" || d == "no-cache":
			ttl = 0
		case strings.HasPrefix(d, "max-age="):
			if n, err := strconv.Atoi(strings.TrimPrefix(d, "max-age=")); err == nil {
				ttl = time.Duration(n) * time.Second
			}
		}
	}
	return min(max(ttl, f.cfg.MinCache), f.cfg.MaxCache)
}
