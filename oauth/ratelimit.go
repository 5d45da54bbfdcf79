package oauth

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/warden-mcp/warden/internal/config"
)

// limiter is a token bucket per key (source address or user name).
// Buckets idle for longer than it takes to refill are dropped, so the map
// stays bounded by the number of recently active sources.
type limiter struct {
	perMinute int
	now       func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(perMinute int, now func() time.Time) *limiter {
	return &limiter{perMinute: perMinute, now: now, buckets: map[string]*bucket{}}
}

// allow takes one token from key's bucket.
func (l *limiter) allow(key string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > 2*time.Minute {
				delete(l.buckets, k)
			}
		}
		l.sweep = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)}
		l.buckets[key] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

type limiters struct {
	register, token, authorize, login, loginUser *limiter
	hops                                         int
}

func newLimiters(c config.RateLimit, now func() time.Time) limiters {
	return limiters{
		register:  newLimiter(c.RegisterPerMinute, now),
		token:     newLimiter(c.TokenPerMinute, now),
		authorize: newLimiter(c.AuthorizePerMinute, now),
		login:     newLimiter(c.LoginPerMinute, now),
		loginUser: newLimiter(c.LoginPerMinute, now),
		hops:      c.TrustedProxyHops,
	}
}

// source is the client address a rate limit applies to: the peer, or the
// X-Forwarded-For entry appended by the outermost trusted proxy. Entries
// left of it are client-supplied and never trusted.
func (l limiters) source(r *http.Request) string {
	if l.hops > 0 {
		var all []string
		for _, v := range r.Header.Values("X-Forwarded-For") {
			for _, p := range strings.Split(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					all = append(all, p)
				}
			}
		}
		if len(all) >= l.hops {
			return all[len(all)-l.hops]
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limit answers 429 when the source exceeded l's rate.
func (s *Server) limit(w http.ResponseWriter, r *http.Request, l *limiter, endpoint string) bool {
	if l.allow(s.limits.source(r)) {
		return true
	}
	s.metrics.rateLimited.WithLabelValues(endpoint).Inc()
	w.Header().Set("Retry-After", "60")
	writeJSONError(w, jsonError{Status: http.StatusTooManyRequests, Code: "temporarily_unavailable", Description: "too many requests from this address; retry later"})
	return false
}
