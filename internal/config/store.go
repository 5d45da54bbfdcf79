package config

import (
	"fmt"
	"strings"
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
	Postgres Postgres `json:"postgres"`
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
	if s.Postgres.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("store.postgres.max_conns: must not be negative"))
	}
	return errs
}
