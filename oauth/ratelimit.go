package oauth

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// limiterSize bounds how many sources (or user names, or hosts) a limiter
// remembers. An evicted key starts again with a full bucket, so the size
// only has to exceed the number of sources active within a refill period.
const limiterSize = 65536

// limiter is a token bucket per key (source address, user name, host) in
// a bounded LRU, or, with shared set, in the deployment's store.
type limiter struct {
	limit   rate.Limit
	burst   int
	every   time.Duration
	now     func() time.Time
	buckets *lru.Cache[string, *rate.Limiter]
	// shared counts the limit for every replica under bucket.
	shared SharedLimiter
	bucket string
}

// SharedLimiter counts token buckets for the whole deployment: burst
// events per key, refilled evenly over every (the PostgreSQL store's
// Allow, one bucket per key for all replicas).
type SharedLimiter interface {
	Allow(ctx context.Context, bucket, key string, burst int, every time.Duration, now time.Time) (bool, error)
}

// sharedAs makes l count in shared under bucket (nil shared: no change).
func (l *limiter) sharedAs(shared SharedLimiter, bucket string) *limiter {
	l.shared, l.bucket = shared, bucket
	return l
}

// newLimiter allows perMinute events per key and minute, in bursts of as
// many.
func newLimiter(perMinute, size int, now func() time.Time) *limiter {
	return newBucketLimiter(perMinute, time.Minute, size, now)
}

// newBucketLimiter allows burst events per key, refilled over every.
func newBucketLimiter(burst int, every time.Duration, size int, now func() time.Time) *limiter {
	return &limiter{limit: rate.Limit(float64(burst) / every.Seconds()), burst: burst, every: every, now: now, buckets: mustLRU[string, *rate.Limiter](size)}
}

// mustLRU is the one bounded cache type of this package (the
// hashicorp/golang-lru LRU, as authz and policy use).
func mustLRU[K comparable, V any](size int) *lru.Cache[K, V] {
	c, err := lru.New[K, V](size)
	if err != nil {
		panic("oauth: cache size: " + err.Error())
	}
	return c
}

// allow takes one token from key's bucket.
func (l *limiter) allow(key string) bool {
	b, ok := l.buckets.Get(key)
	if !ok {
		fresh := rate.NewLimiter(l.limit, l.burst)
		if prev, found, _ := l.buckets.PeekOrAdd(key, fresh); found {
			b = prev
		} else {
			b = fresh
		}
	}
	return b.AllowN(l.now(), 1)
}

type limiters struct {
	register, token, authorize, login, loginUser *limiter
	// pending bounds sign-ins started and not finished per source, and
	// pendingAll overall: each one is a stored record until LoginTTL.
	pending, pendingAll *limiter
}

func newLimiters(o Options, now func() time.Time) limiters {
	c := o.RateLimit
	return limiters{
		register:   newLimiter(c.RegisterPerMinute, limiterSize, now).sharedAs(o.SharedLimits, "register"),
		token:      newLimiter(c.TokenPerMinute, limiterSize, now).sharedAs(o.SharedLimits, "token"),
		authorize:  newLimiter(c.AuthorizePerMinute, limiterSize, now),
		login:      newLimiter(c.LoginPerMinute, limiterSize, now),
		loginUser:  newLimiter(c.LoginPerMinute, limiterSize, now),
		pending:    newBucketLimiter(o.Limits.PendingLoginsPerSource, o.LoginTTL, limiterSize, now),
		pendingAll: newBucketLimiter(o.Limits.PendingLogins, o.LoginTTL, 1, now),
	}
}

// limit answers 429 when the request's source exceeded l's rate.
func (s *Server) limit(r *http.Request, l *limiter, endpoint string) error {
	key := s.sources.key(r)
	if l.shared != nil {
		ok, err := l.shared.Allow(r.Context(), l.bucket, key, l.burst, l.every, l.now())
		if err != nil {
			// Fail closed: the endpoints behind these limits need the
			// store too.
			s.log.Error("shared rate limit", "endpoint", endpoint, "err", err)
			return oauthError(http.StatusServiceUnavailable, "temporarily_unavailable", "the rate limit cannot be checked; retry later")
		}
		if ok {
			return nil
		}
	} else if l.allow(key) {
		return nil
	}
	s.metrics.rateLimited.WithLabelValues(endpoint).Inc()
	e := oauthError(http.StatusTooManyRequests, "temporarily_unavailable", "too many requests from this address; retry later")
	e.Header = http.Header{"Retry-After": {"60"}}
	return e
}

// sourceResolver finds the client address of a request. X-Forwarded-For
// is believed only as far as it was appended by trusted proxies: walking
// from the right, entries added by a trusted peer are skipped, and the
// first address not in the trusted set is the client. A peer that is not
// trusted is the client, whatever it claims.
type sourceResolver struct {
	trusted []netip.Prefix
}

func (sr sourceResolver) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range sr.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// of is the client address, for audit events.
func (sr sourceResolver) of(r *http.Request) string {
	return sr.addr(r).String()
}

func (sr sourceResolver) addr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	peer = peer.Unmap()
	if !sr.isTrusted(peer) {
		return peer
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			// A malformed entry ends what can be believed.
			break
		}
		client = a.Unmap()
		if !sr.isTrusted(client) {
			break
		}
	}
	return client
}

// key is what a per-source rate limit counts: the client address, with
// IPv6 addresses grouped by /64 (one subscriber typically holds a whole
// /64, and could otherwise rotate through it).
func (sr sourceResolver) key(r *http.Request) string {
	a := sr.addr(r)
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}
