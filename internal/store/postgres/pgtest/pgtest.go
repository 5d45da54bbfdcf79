// Package pgtest gives each test a PostgreSQL schema of its own on the
// server WARDEN_TEST_POSTGRES_DSN names, so tests (and engineers running
// them side by side on one machine) never see each other's rows.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the variable holding the test server's DSN; .ci/run sets it.
const EnvDSN = "WARDEN_TEST_POSTGRES_DSN"

// BaseDSN returns the test server's DSN. Without one the test is skipped,
// except in CI (CI set), where a missing database is a failure.
func BaseDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: CI must run the PostgreSQL tests (.ci/run starts a server and sets it)", EnvDSN)
		}
		t.Skipf("%s is not set: no PostgreSQL to test against (.ci/run sets it)", EnvDSN)
	}
	return dsn
}

// Schema creates an empty schema, dropped with everything in it when t
// ends, and returns a DSN whose search_path selects it, and its name.
func Schema(t testing.TB) (dsn, schema string) {
	t.Helper()
	base := BaseDSN(t)
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema = "warden_test_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to the test PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return WithSearchPath(base, schema), schema
}

// WithSearchPath returns dsn with search_path set to schema, in either DSN
// form (URL or key=value).
func WithSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " search_path=" + schema
}
