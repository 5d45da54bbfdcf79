package postgres_test

import (
	"context"
	"testing"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/store/postgres"
	"github.com/warden-mcp/warden/internal/store/postgres/pgtest"
	"github.com/warden-mcp/warden/internal/store/storetest"
)

func TestMain(m *testing.M) {
	storetest.ChildMain(m, func(dsn string) (store.Store, error) {
		return postgres.Open(context.Background(), postgres.Options{DSN: dsn, MaxConns: 4, SweepInterval: -1})
	})
}

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	dsns := map[store.Store]string{}
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) store.Store {
			dsn, _ := pgtest.Schema(t)
			s := open(t, dsn)
			dsns[s] = dsn
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			dsn := dsns[s]
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, dsn)
		},
	})
}

func TestShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, string) {
		dsn, _ := pgtest.Schema(t)
		return open(t, dsn), dsn
	})
}
