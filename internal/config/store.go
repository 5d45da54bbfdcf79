package config

import (
	"fmt"
	"strings"
	"time"
)

// Store backends.
const (
	BackendBadger   = "badger"
	BackendPostgres = "postgres"
)

// Store selects and configures the state backend.
type Store struct {
	// Backend is "badger" (embedded, under data_dir/store; one process) or
	// "postgres" (shared by replicas).
	Backend  string   `json:"backend"`
	Badger   Badger   `json:"badger"`
	Postgres Postgres `json:"postgres"`
}

// Badger configures the embedded backend.
type Badger struct {
	// DiskReserve is the free space on the data volume below which the
	// store refuses writes (Checks deny with 503, reads go on) instead of
	// letting Badger's memory-mapped files hit a full disk, which kills
	// the process with SIGBUS. A size as GOMEMLIMIT writes it; "off"
	// disables the guard; empty is 128MiB.
	DiskReserve string `json:"disk_reserve"`
}

// DiskReserveBytes is DiskReserve in bytes: 0 for the default, negative
// for no guard.
func (b Badger) DiskReserveBytes() int64 {
	if b.DiskReserve == "off" {
		return -1
	}
	n, _ := ParseBytes(b.DiskReserve)
	return n
}

// Postgres configures the PostgreSQL backend.
type Postgres struct {
	// DSN is a libpq connection string or postgres:// URL. It usually holds
	// a password: set it with WARDEN_STORE_POSTGRES_DSN or a ${VAR}
	// reference rather than in the file. A search_path parameter selects
	// the schema.
	DSN string `json:"dsn"`
	// MaxConns bounds the connection pool; 0 keeps the driver's default
	// (4, or the number of CPUs if more).
	MaxConns int `json:"max_conns"`
	// ReplicaLease is how long a replica's hot cache stays usable without
	// renewing its lease in the database: the longest a revocation waits
	// for a replica that stopped answering, and the longest a replica cut
	// off from PostgreSQL answers from its cache. 0 means 10s.
	ReplicaLease Duration `json:"replica_lease"`
}

func defaultStore() Store { return Store{Backend: BackendBadger} }

func (s Store) validate() []error {
	var errs []error
	switch s.Backend {
	case BackendBadger:
	case BackendPostgres:
		if strings.TrimSpace(s.Postgres.DSN) == "" {
			errs = append(errs, fmt.Errorf("store.postgres.dsn: must be set for the postgres backend (WARDEN_STORE_POSTGRES_DSN)"))
		}
	default:
		errs = append(errs, fmt.Errorf("store.backend: must be badger or postgres, got %q", s.Backend))
	}
	if _, err := ParseBytes(s.Badger.DiskReserve); err != nil {
		errs = append(errs, fmt.Errorf("store.badger.disk_reserve: %w", err))
	}
	if s.Postgres.ReplicaLease < 0 || (s.Postgres.ReplicaLease > 0 && s.Postgres.ReplicaLease.D() < 500*time.Millisecond) {
		errs = append(errs, fmt.Errorf("store.postgres.replica_lease: must be at least 500ms"))
	}
	if s.Postgres.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("store.postgres.max_conns: must not be negative"))
	}
	return errs
}
