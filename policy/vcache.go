package policy

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// vcache is the topdown.VirtualCache of one evaluation: the values of the
// rules evaluated so far, one frame per active `with`. OPA's default is a
// trie of hash maps built afresh for every query; a request caches only a
// handful of values, so a flat list costs far fewer allocations, and the
// lists are pooled across requests. A frame that grows past linearMax
// entries (a policy reading many keys of one partial rule) gets a hash
// index so lookups stay O(1).
type vcache struct {
	frames []vframe
	// refs holds copies of the cached refs: the evaluator may reuse the
	// slice it passed in.
	refs []*ast.Term
}

type vframe struct {
	entries []vcacheEntry
	index   map[int][]int // ref hash -> entries; nil until len(entries) > linearMax
}

type vcacheEntry struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool
}

const linearMax = 16

var _ topdown.VirtualCache = (*vcache)(nil)

var vcachePool = sync.Pool{New: func() any {
	return &vcache{frames: make([]vframe, 1, 4), refs: make([]*ast.Term, 0, 32)}
}}

func getVCache() *vcache { return vcachePool.Get().(*vcache) }

func putVCache(c *vcache) {
	if cap(c.refs) > 4096 {
		return // an unusually large evaluation: let it go rather than pin its memory
	}
	// Drop every reference so a pooled cache keeps no request data alive.
	all := c.frames[:cap(c.frames)]
	for i := range all {
		all[i].reset()
	}
	c.frames = c.frames[:1]
	clear(c.refs[:cap(c.refs)])
	c.refs = c.refs[:0]
	vcachePool.Put(c)
}

func (f *vframe) reset() {
	clear(f.entries[:cap(f.entries)])
	f.entries = f.entries[:0]
	f.index = nil
}

func (c *vcache) top() *vframe { return &c.frames[len(c.frames)-1] }

func (c *vcache) Push() {
	if n := len(c.frames); n < cap(c.frames) {
		c.frames = c.frames[:n+1] // reuses the entries slice Pop left there
		return
	}
	c.frames = append(c.frames, vframe{})
}

func (c *vcache) Pop() {
	c.top().reset()
	c.frames = c.frames[:len(c.frames)-1]
}

func (f *vframe) find(ref ast.Ref) *vcacheEntry {
	if f.index != nil {
		for _, i := range f.index[ref.Hash()] {
			if f.entries[i].ref.Equal(ref) {
				return &f.entries[i]
			}
		}
		return nil
	}
	for i := range f.entries {
		if f.entries[i].ref.Equal(ref) {
			return &f.entries[i]
		}
	}
	return nil
}

func (c *vcache) Get(ref ast.Ref) (*ast.Term, bool) {
	e := c.top().find(ref)
	switch {
	case e == nil:
		return nil, false
	case e.undefined:
		return nil, true
	default:
		return e.value, false
	}
}

func (c *vcache) Put(ref ast.Ref, value *ast.Term) {
	f := c.top()
	e := f.find(ref)
	if e == nil {
		start := len(c.refs)
		c.refs = append(c.refs, ref...)
		f.entries = append(f.entries, vcacheEntry{ref: ast.Ref(c.refs[start:len(c.refs):len(c.refs)])})
		n := len(f.entries)
		switch {
		case f.index != nil:
			h := ref.Hash()
			f.index[h] = append(f.index[h], n-1)
		case n > linearMax:
			f.index = make(map[int][]int, 2*n)
			for i := range f.entries {
				h := f.entries[i].ref.Hash()
				f.index[h] = append(f.index[h], i)
			}
		}
		e = &f.entries[n-1]
	}
	if value != nil {
		e.value = value
	} else {
		e.undefined = true
	}
}

func (c *vcache) Keys() []ast.Ref {
	f := c.top()
	keys := make([]ast.Ref, 0, len(f.entries))
	for _, e := range f.entries {
		if e.value != nil {
			keys = append(keys, e.ref)
		}
	}
	return keys
}
