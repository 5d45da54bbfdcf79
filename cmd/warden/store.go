package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"

	"github.com/spf13/cobra"

	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/store/postgres"
)

// openStore opens the backend the config names.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, error) {
	if cfg.Store.Backend == config.BackendPostgres {
		return postgres.Open(ctx, postgres.Options{DSN: cfg.Store.Postgres.DSN, MaxConns: cfg.Store.Postgres.MaxConns, Logger: log})
	}
	return store.OpenBadger(filepath.Join(cfg.DataDir, "store"), store.BadgerOptions{Logger: log, DiskReserve: cfg.Store.Badger.DiskReserveBytes()})
}

// storeHealth is the readiness check of st: the error of a store that has
// failed for good (the Badger backend after a write Badger could not do).
func storeHealth(st store.Store) func() error {
	if s, ok := st.(interface{ Err() error }); ok {
		return s.Err
	}
	return func() error { return nil }
}

// closeStore closes st within ctx: a store that cannot flush (Badger
// retries forever) must not hold the process past its drain timeout.
func closeStore(ctx context.Context, st store.Store) error {
	if s, ok := st.(interface{ Shutdown(context.Context) error }); ok {
		return s.Shutdown(ctx)
	}
	done := make(chan error, 1)
	go func() { done <- st.Close() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("close store: %w", ctx.Err())
	}
}

func newStoreCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "store", Short: "Operate on the state store directly (Warden stopped)"}
	var from, to, cfgPath string
	migrate := &cobra.Command{
		Use:   "migrate --from <badger dir> [--to <dsn>]",
		Short: "Copy a Badger store into an empty PostgreSQL store and verify the copy",
		Long: `Copies every live record (clients, grants, handles, servers, sessions,
consents) and the whole audit trail from a Badger store directory (the
store/ folder of a data_dir) into a PostgreSQL store, in one transaction,
then verifies the audit chain on PostgreSQL and compares the records.

The target must be empty: a second run refuses and changes nothing. A
failed run leaves the target as it was, so it can be run again. Stop
warden serve on the Badger directory first (Badger is held by one process).
Signing and sealing keys stay files: copy data_dir's key files (or their
environment variables) to the replicas as they are.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				cc, err := config.LoadClient(cfgPath)
				if err != nil {
					return err
				}
				to = cc.PostgresDSN
			}
			if from == "" || to == "" {
				return errors.New("--from and --to (or WARDEN_STORE_POSTGRES_DSN) are required")
			}
			return migrateStore(cmd.Context(), from, to, cmd.OutOrStdout())
		},
	}
	migrate.Flags().StringVar(&from, "from", "", "Badger store directory (<data_dir>/store)")
	migrate.Flags().StringVar(&to, "to", "", "PostgreSQL DSN (default store.postgres.dsn of the config, or WARDEN_STORE_POSTGRES_DSN; prefer those: a flag shows in the process list)")
	migrate.Flags().StringVarP(&cfgPath, "config", "c", config.PathFromEnv(), "the server's YAML config file, for store.postgres.dsn (env "+config.PathEnv+")")
	cmd.AddCommand(migrate)
	return cmd
}

// migrateStore copies, then checks the copy two ways: the records compared
// one by one with the source, and the audit chain verified on the target.
func migrateStore(ctx context.Context, from, to string, out io.Writer) error {
	if _, err := os.Stat(filepath.Join(from, "MANIFEST")); err != nil {
		return fmt.Errorf("%s is not a Badger store directory (expected <data_dir>/store): %w", from, err)
	}
	src, err := store.OpenBadger(from, store.BadgerOptions{})
	if err != nil {
		return fmt.Errorf("%w (is warden serve still running on it?)", err)
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, postgres.Options{DSN: to, SweepInterval: -1})
	if err != nil {
		return err
	}
	defer dst.Close()

	n, err := dst.Restore(ctx, src)
	if errors.Is(err, postgres.ErrNotEmpty) {
		return errors.New("the target PostgreSQL store is not empty: nothing was copied (migrate into a new database or schema)")
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "copied %s\n", n)

	if err := store.Compare(ctx, src, dst); err != nil {
		return fmt.Errorf("copy does not match the source: %w", err)
	}
	// The checkpoints a pruned trail verifies from, compared too.
	srcCPs, err := src.ListAuditCheckpoints(ctx)
	if err != nil {
		return err
	}
	dstCPs, err := dst.ListAuditCheckpoints(ctx)
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(srcCPs, dstCPs) {
		return fmt.Errorf("copy does not match the source: %d audit checkpoints against %d, or one differs", len(srcCPs), len(dstCPs))
	}
	rep, err := audit.Verify(ctx, dst)
	if err != nil {
		return fmt.Errorf("verify audit trail on PostgreSQL: %w", err)
	}
	if !rep.OK() {
		return fmt.Errorf("audit chain on PostgreSQL broken at seq %d: %s", rep.Broken, rep.Reason)
	}
	if uint64(n.AuditEvents) != rep.Events {
		return fmt.Errorf("copied %d audit events but %d verify", n.AuditEvents, rep.Events)
	}
	if rep.Events > 0 {
		fmt.Fprintf(out, "audit chain intact on PostgreSQL: %d events, seq %d..%d\n", rep.Events, rep.First, rep.Last)
	} else {
		fmt.Fprintln(out, "audit trail empty")
	}
	fmt.Fprintln(out, "records compared: identical")
	return nil
}
