package keys_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/warden-mcp/warden/internal/keys"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store/postgres"
	"github.com/warden-mcp/warden/internal/store/postgres/pgtest"
)

func replica(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), postgres.Options{DSN: dsn, SweepInterval: -1, Replica: &postgres.ReplicaOptions{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Two replicas on one store sign with the same key and serve the same
// JWKS; a rotation on one reaches the other through the store's
// notification; the sealing keyring is shared the same way; a replica
// with another key-encryption key cannot start on the store.
func TestKeysSharedByReplicas(t *testing.T) {
	ctx := context.Background()
	dsn, _ := pgtest.Schema(t)
	a, b := replica(t, dsn), replica(t, dsn)
	raw, _ := seal.Generate()
	kek, err := seal.New("kek1", map[string][]byte{"kek1": raw})
	if err != nil {
		t.Fatal(err)
	}
	seed, err := keys.NewEphemeral()
	if err != nil {
		t.Fatal(err)
	}
	sa, err := keys.OpenShared(ctx, a, kek, seed)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := keys.OpenShared(ctx, b, kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sa.KeyID() != seed.KeyID() || sb.KeyID() != seed.KeyID() || !bytes.Equal(sa.PublicJWKS(), sb.PublicJWKS()) {
		t.Fatalf("replicas disagree: %s %s (seed %s)", sa.KeyID(), sb.KeyID(), seed.KeyID())
	}
	notes := b.Subscribe('b')
	if err := sa.Rotate(); err != nil {
		t.Fatal(err)
	}
	if sa.KeyID() == seed.KeyID() {
		t.Fatal("rotation kept the key")
	}
	select {
	case name := <-notes:
		if name != keys.SharedBlob {
			t.Fatalf("notified %q", name)
		}
	case <-time.After(time.Minute):
		t.Fatal("no notification of the rotation")
	}
	if err := sb.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if sb.KeyID() != sa.KeyID() || !bytes.Equal(sa.PublicJWKS(), sb.PublicJWKS()) {
		t.Fatal("the other replica does not use the rotated key")
	}

	ra, err := seal.OpenShared(ctx, a, kek)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := seal.OpenShared(ctx, b, kek)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Primary() != rb.Primary() {
		t.Fatal("sealing keyrings differ")
	}
	old, err := kek.Seal([]byte("from a single node"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := rb.Open(old, []byte("aad")); err != nil || string(pt) != "from a single node" {
		t.Fatalf("a value sealed under the KEK before sharing: %q %v", pt, err)
	}
	if err := ra.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	sealed, err := ra.Seal([]byte("secret"), []byte("g1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rb.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if rb.Primary() != ra.Primary() {
		t.Fatal("rotation not installed")
	}
	if pt, err := rb.Open(sealed, []byte("g1")); err != nil || string(pt) != "secret" {
		t.Fatalf("open on the other replica: %v", err)
	}

	raw2, _ := seal.Generate()
	other, _ := seal.New("kek1", map[string][]byte{"kek1": raw2})
	if _, err := keys.OpenShared(ctx, b, other, nil); err == nil {
		t.Fatal("a replica with another KEK opened the shared signing keys")
	}
	if _, err := seal.OpenShared(ctx, b, other); err == nil {
		t.Fatal("a replica with another KEK opened the shared sealing keys")
	}
}
