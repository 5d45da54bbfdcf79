package config

import (
	"strings"
	"testing"
)

func TestStoreSection(t *testing.T) {
	cases := []struct {
		name    string
		file    string
		env     map[string]string
		backend string
		dsn     string
		conns   int
		err     string
	}{
		{name: "default is badger", backend: BackendBadger},
		{
			name:    "dsn from the environment override",
			file:    "store:\n  backend: postgres\n",
			env:     map[string]string{"WARDEN_STORE_POSTGRES_DSN": "postgres://warden:pw@db:5432/warden", "WARDEN_STORE_POSTGRES_MAX_CONNS": "12"},
			backend: BackendPostgres, dsn: "postgres://warden:pw@db:5432/warden", conns: 12,
		},
		{
			name:    "dsn from a ${VAR} reference",
			file:    "store:\n  backend: postgres\n  postgres:\n    dsn: ${PG_DSN}\n",
			env:     map[string]string{"PG_DSN": "host=db user=warden password=p$w dbname=warden"},
			backend: BackendPostgres, dsn: "host=db user=warden password=p$w dbname=warden",
		},
		{
			name:    "backend from the environment",
			env:     map[string]string{"WARDEN_STORE_BACKEND": "postgres", "WARDEN_STORE_POSTGRES_DSN": "postgres://db/w"},
			backend: BackendPostgres, dsn: "postgres://db/w",
		},
		{name: "postgres needs a dsn", file: "store:\n  backend: postgres\n", err: "store.postgres.dsn: must be set"},
		{name: "unknown backend", file: "store:\n  backend: etcd\n", err: `store.backend: must be badger or postgres, got "etcd"`},
		{name: "negative pool", file: "store:\n  postgres:\n    max_conns: -1\n", err: "store.postgres.max_conns"},
		{name: "unknown key", file: "store:\n  postgres:\n    url: x\n", err: "unknown field"},
		{name: "bad disk reserve", file: "store:\n  badger:\n    disk_reserve: lots\n", err: "store.badger.disk_reserve: invalid size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			path := ""
			if tc.file != "" {
				path = write(t, tc.file)
			}
			c, err := Load(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Store.Backend != tc.backend || c.Store.Postgres.DSN != tc.dsn || c.Store.Postgres.MaxConns != tc.conns {
				t.Fatalf("store section: %+v", c.Store)
			}
		})
	}
}

func TestDiskReserveBytes(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "off": -1, "256MiB": 256 << 20, "1GiB": 1 << 30} {
		if got := (Badger{DiskReserve: in}).DiskReserveBytes(); got != want {
			t.Errorf("DiskReserveBytes(%q) = %d, want %d", in, got, want)
		}
	}
}
