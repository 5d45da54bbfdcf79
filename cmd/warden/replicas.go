package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/internal/keys"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/store/postgres"
	"github.com/warden-mcp/warden/oauth"
)

// openServeStore opens the store for `warden serve`: on PostgreSQL as
// one replica of several, with the hot cache and its protocol
// (internal/store/postgres, replica.go).
func openServeStore(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, error) {
	if cfg.Store.Backend != config.BackendPostgres {
		return openStore(ctx, cfg, log)
	}
	return postgres.Open(ctx, postgres.Options{DSN: cfg.Store.Postgres.DSN, MaxConns: cfg.Store.Postgres.MaxConns, Logger: log,
		Replica: &postgres.ReplicaOptions{Lease: cfg.Store.Postgres.ReplicaLease.D()}})
}

// replicaReady is the /readyz check of a replica on PostgreSQL: not
// ready while its lease is lapsed (it fails closed anyway). Always ready
// on Badger.
func replicaReady(st store.Store) func() error {
	if pg, ok := st.(*postgres.Store); ok {
		return pg.ReplicaReady
	}
	return func() error { return nil }
}

// registerReplicaMetrics exports the replica's lease state on PostgreSQL;
// nothing on Badger.
func registerReplicaMetrics(st store.Store, reg prometheus.Registerer) error {
	if pg, ok := st.(*postgres.Store); ok {
		return pg.RegisterReplicaMetrics(reg)
	}
	return nil
}

// replicaKeys are the keys replicas share through the store: nil on
// Badger, where the key files of data_dir are the keys.
type replicaKeys struct {
	st     *postgres.Store
	ring   *seal.Shared
	signer *keys.Signer
	log    *slog.Logger
}

// shareKeys moves the signing and sealing keys into the PostgreSQL store,
// sealed under the keyring every replica reads from WARDEN_SEALING_KEYS
// or keys.sealing_file, which becomes the key-encryption key. The first
// replica seeds the store with its signing file's keys; the others load
// what is there.
func shareKeys(ctx context.Context, st store.Store, kek *seal.Keyring, fileSigner *keys.Signer, log *slog.Logger) (*replicaKeys, error) {
	pg, ok := st.(*postgres.Store)
	if !ok {
		return nil, nil
	}
	ring, err := seal.OpenShared(ctx, pg, kek)
	if err != nil {
		return nil, fmt.Errorf("%w (every replica needs the same WARDEN_SEALING_KEYS)", err)
	}
	signer, err := keys.OpenShared(ctx, pg, kek, fileSigner)
	if err != nil {
		return nil, fmt.Errorf("%w (every replica needs the same WARDEN_SEALING_KEYS)", err)
	}
	log.Info("keys shared through the store", "signing_kid", signer.KeyID(), "sealing_primary", ring.Primary())
	return &replicaKeys{st: pg, ring: ring, signer: signer, log: log}, nil
}

// limits is the deployment-wide rate limiter on PostgreSQL (nil on Badger).
func sharedLimits(st store.Store) oauth.SharedLimiter {
	if pg, ok := st.(*postgres.Store); ok {
		return pg
	}
	return nil
}

// keyReload is how often replicas reread the shared keys besides on
// notification (a notification missed in a reconnect).
const keyReload = time.Minute

// watch installs key rotations and server changes made by other replicas
// until ctx ends.
func (k *replicaKeys) watch(ctx context.Context, servers *registry.Registry) {
	blobs, srv := k.st.Subscribe('b'), k.st.Subscribe('s')
	tick := time.NewTicker(keyReload)
	defer tick.Stop()
	reload := func(name string) {
		var err error
		switch name {
		case keys.SharedBlob:
			err = k.signer.Reload(ctx)
		case seal.SharedKeyringBlob:
			err = k.ring.Reload(ctx)
		}
		if err != nil && ctx.Err() == nil {
			k.log.Error("reloading shared keys", "blob", name, "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case name := <-blobs:
			reload(name)
		case <-srv:
			// The registry reads servers from the store: its hooks (the
			// ext_authz catalog) and subscribers (xDS) reread them.
			servers.Changed()
		case <-tick.C:
			reload(keys.SharedBlob)
			reload(seal.SharedKeyringBlob)
			servers.Changed()
		}
	}
}
