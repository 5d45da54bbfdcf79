package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/store/postgres"
	"github.com/warden-mcp/warden/internal/store/postgres/pgtest"
)

// BenchmarkResolveHandle is the store's share of every Check, on both
// backends: Badger answers from its hot cache (exact for one process),
// PostgreSQL reads through with one statement (a join of the handle and
// its grant) per call. Serial is the latency of one lookup; Parallel the
// throughput with as many callers as GOMAXPROCS and a pool of 8.
func BenchmarkResolveHandle(b *testing.B) {
	ctx := context.Background()
	backends := map[string]func(b *testing.B) store.Store{
		"badger": func(b *testing.B) store.Store {
			s, err := store.OpenBadger(b.TempDir(), store.BadgerOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			return s
		},
		"postgres": func(b *testing.B) store.Store {
			dsn, _ := pgtest.Schema(b)
			s, err := postgres.Open(ctx, postgres.Options{DSN: dsn, MaxConns: 8})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			return s
		},
	}
	backends["postgres-hot"] = func(b *testing.B) store.Store {
		dsn, _ := pgtest.Schema(b)
		s, err := postgres.Open(ctx, postgres.Options{DSN: dsn, MaxConns: 8, Replica: &postgres.ReplicaOptions{}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		return s
	}
	for _, name := range []string{"badger", "postgres", "postgres-hot"} {
		s := backends[name](b)
		g := store.Grant{ID: "g", Subject: "alice@example.com", ClientID: "c", Kind: store.KindUser, Groups: []string{"finance", "eng"},
			Scopes: []string{"bi.read"}, Servers: []string{"bi"}, Resources: []string{"https://mcp.example.com/mcp/bi"},
			Claims: map[string]any{"department": "finance"}, CreatedAt: time.Now()}
		if err := s.CreateGrant(ctx, g); err != nil {
			b.Fatal(err)
		}
		const handles = 64
		digests := make([]string, handles)
		for i := range digests {
			digests[i] = fmt.Sprintf("%064x", i)
			h := store.Handle{Digest: digests[i], Kind: store.HandleAccess, GrantID: "g", ClientID: "c",
				Resources: g.Resources, Scopes: g.Scopes, IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
			if err := s.CreateHandle(ctx, h); err != nil {
				b.Fatal(err)
			}
		}
		resolve := func(b *testing.B, i int) {
			if _, _, err := s.ResolveHandle(ctx, digests[i%handles]); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				resolve(b, i)
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					resolve(b, i)
					i++
				}
			})
		})
	}
}
