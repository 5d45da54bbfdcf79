package store_test

import (
	"testing"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/store/storetest"
)

func TestBadgerConformance(t *testing.T) {
	dirs := map[store.Store]string{}
	open := func(t *testing.T, dir string) store.Store {
		s, err := store.OpenBadger(dir, store.BadgerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dirs[s] = dir
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) store.Store { return open(t, t.TempDir()) },
		Reopen: func(t *testing.T, s store.Store) store.Store {
			dir := dirs[s]
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, dir)
		},
	})
}
