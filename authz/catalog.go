package authz

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/warden-mcp/warden/internal/store"
)

// ServerLister lists registered servers.
type ServerLister interface {
	List(ctx context.Context) ([]store.Server, error)
}

// Catalog serves server lookups from memory. Invalidate drops the snapshot
// synchronously (the registry calls it before a change returns), and the
// next lookup reloads, so a Check never sees a server as it was before a
// completed change.
type Catalog struct {
	src  ServerLister
	snap atomic.Pointer[map[string]store.Server]
	mu   sync.Mutex // serialises reloads and invalidations
}

// NewCatalog returns a catalog over src.
func NewCatalog(src ServerLister) *Catalog { return &Catalog{src: src} }

// Invalidate forgets the snapshot.
func (c *Catalog) Invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snap.Store(nil)
}

// Server returns the named server or store.ErrNotFound.
func (c *Catalog) Server(ctx context.Context, name string) (store.Server, error) {
	m := c.snap.Load()
	if m == nil {
		var err error
		if m, err = c.reload(ctx); err != nil {
			return store.Server{}, err
		}
	}
	s, ok := (*m)[name]
	if !ok {
		return store.Server{}, store.ErrNotFound
	}
	return s, nil
}

func (c *Catalog) reload(ctx context.Context) (*map[string]store.Server, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.snap.Load(); m != nil {
		return m, nil
	}
	list, err := c.src.List(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]store.Server, len(list))
	for _, s := range list {
		m[s.Name] = s
	}
	// Invalidate takes mu too, so it cannot slip between this list and
	// the store below and be overwritten by older data.
	c.snap.Store(&m)
	return &m, nil
}
