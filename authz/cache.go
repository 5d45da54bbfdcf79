package authz

import "sync"

// boundedMap is a mutex-guarded map that forgets half its entries when it
// reaches max, so a flood of distinct keys costs recomputation, not memory.
// Entries are looked up by exact key; callers put everything that makes an
// entry stale (record versions, expiry) into the key or the value.
type boundedMap[K comparable, V any] struct {
	mu  sync.RWMutex
	m   map[K]V
	max int
}

func newBoundedMap[K comparable, V any](max int) *boundedMap[K, V] {
	return &boundedMap[K, V]{m: map[K]V{}, max: max}
}

func (b *boundedMap[K, V]) get(k K) (V, bool) {
	b.mu.RLock()
	v, ok := b.m[k]
	b.mu.RUnlock()
	return v, ok
}

func (b *boundedMap[K, V]) put(k K, v V) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.m) >= b.max {
		n := 0
		for key := range b.m {
			delete(b.m, key)
			if n++; n >= b.max/2 {
				break
			}
		}
	}
	b.m[k] = v
}
