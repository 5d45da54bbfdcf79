package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/warden-mcp/warden/internal/store"
)

// table maps one record type to its table: the key column, the columns
// queries filter on (taken from the record at every write) and, for
// expiring records, expires_at among them.
type table[T any] struct {
	what    string // in error messages
	name    string
	key     string
	cols    []string
	values  func(T) []any // values of cols, in order
	expires bool          // cols holds expires_at: expired rows read as absent
	keyOf   func(T) string
	setKey  func(*T, string)
	version func(*T) *uint64

	insertSQL, restoreSQL, getSQL, lockSQL, updateSQL, deleteSQL, listSQL string
}

// live is the condition a row of an expiring table must meet to exist.
const live = "(expires_at IS NULL OR expires_at > $2)"

func (t *table[T]) build() *table[T] {
	all := append([]string{t.key, "version", "data"}, t.cols...)
	ph := make([]string, len(all))
	set := make([]string, 0, len(all)-1)
	for i, c := range all {
		ph[i] = fmt.Sprintf("$%d", i+1)
		if i > 0 {
			set = append(set, fmt.Sprintf("%s = $%d", c, i+1))
		}
	}
	t.restoreSQL = fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", t.name, strings.Join(all, ", "), strings.Join(ph, ", "))
	t.insertSQL = t.restoreSQL + fmt.Sprintf(" ON CONFLICT (%s) ", t.key)
	where := fmt.Sprintf(" WHERE %s = $1", t.key)
	if t.expires {
		// An expired row is gone as far as every reader can tell, so a
		// create may take its key over before the sweep deletes it.
		excl := make([]string, 0, len(all)-1)
		for _, c := range all[1:] {
			excl = append(excl, fmt.Sprintf("%s = EXCLUDED.%s", c, c))
		}
		t.insertSQL += fmt.Sprintf("DO UPDATE SET %s WHERE %s.expires_at <= $%d", strings.Join(excl, ", "), t.name, len(all)+1)
		where += " AND " + live
	} else {
		t.insertSQL += "DO NOTHING"
	}
	t.getSQL = "SELECT data FROM " + t.name + where
	t.lockSQL = t.getSQL + " FOR UPDATE"
	t.updateSQL = fmt.Sprintf("UPDATE %s SET %s WHERE %s = $1", t.name, strings.Join(set, ", "), t.key)
	t.deleteSQL = fmt.Sprintf("DELETE FROM %s WHERE %s = $1", t.name, t.key)
	if t.expires {
		t.deleteSQL += " RETURNING " + strings.ReplaceAll(live, "$2", "$2::timestamptz")
	}
	t.listSQL = "SELECT data FROM " + t.name
	if t.expires {
		t.listSQL += " WHERE " + strings.ReplaceAll(live, "$2", "$1")
	}
	t.listSQL += " ORDER BY " + t.key
	return t
}

// row returns the values of every written column of v, in build's order.
func (t *table[T]) row(v T) ([]any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", t.what, err)
	}
	return append([]any{t.keyOf(v), int64(*t.version(&v)), data}, t.values(v)...), nil
}

// keyArgs are the arguments of getSQL, lockSQL and deleteSQL.
func (t *table[T]) keyArgs(s *Store, key string) []any {
	if t.expires {
		return []any{key, s.now()}
	}
	return []any{key}
}

func decode[T any](what string, raw []byte) (T, error) {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("decode stored %s: %w", what, err)
	}
	return v, nil
}

func create[T any](ctx context.Context, s *Store, t *table[T], v T) error {
	db, err := s.db()
	if err != nil {
		return err
	}
	if !storable(t.keyOf(v)) {
		return errUnstorable
	}
	*t.version(&v) = 1
	args, err := t.row(v)
	if err != nil {
		return err
	}
	if t.expires {
		args = append(args, s.now())
	}
	tag, err := db.Exec(ctx, t.insertSQL, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrAlreadyExists
	}
	return nil
}

func get[T any](ctx context.Context, s *Store, t *table[T], key string) (T, error) {
	var zero T
	db, err := s.db()
	if err != nil {
		return zero, err
	}
	if !storable(key) {
		return zero, store.ErrNotFound
	}
	var raw []byte
	if err := db.QueryRow(ctx, t.getSQL, t.keyArgs(s, key)...).Scan(&raw); errors.Is(err, pgx.ErrNoRows) {
		return zero, store.ErrNotFound
	} else if err != nil {
		return zero, err
	}
	return decode[T](t.what, raw)
}

// update is the compare-and-swap of every Update method: the row is read
// FOR UPDATE, so concurrent updaters of one record, in this process or any
// other, queue on its row lock and each sees the value the one before it
// committed. The updater runs once per call.
func update[T any](ctx context.Context, s *Store, t *table[T], key string, fn func(T) (T, error)) error {
	if !storable(key) {
		return store.ErrNotFound
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		var raw []byte
		if err := tx.QueryRow(ctx, t.lockSQL, t.keyArgs(s, key)...).Scan(&raw); errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return err
		}
		cur, err := decode[T](t.what, raw)
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		t.setKey(&next, key)
		*t.version(&next) = *t.version(&cur) + 1
		args, err := t.row(next)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, t.updateSQL, args...)
		return err
	})
}

func remove[T any](ctx context.Context, s *Store, t *table[T], key string) error {
	db, err := s.db()
	if err != nil {
		return err
	}
	if !storable(key) {
		return store.ErrNotFound
	}
	if !t.expires {
		tag, err := db.Exec(ctx, t.deleteSQL, key)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	}
	// An expired row is deleted too, and reported as not found, as it was.
	var alive bool
	if err := db.QueryRow(ctx, t.deleteSQL, key, s.now()).Scan(&alive); errors.Is(err, pgx.ErrNoRows) || (err == nil && !alive) {
		return store.ErrNotFound
	} else if err != nil {
		return err
	}
	return nil
}

// list decodes every row query returns.
func list[T any](ctx context.Context, s *Store, what, query string, args ...any) ([]T, error) {
	db, err := s.db()
	if err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	var out []T
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			rows.Close()
			return nil, err
		}
		v, err := decode[T](what, raw)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// expiry is the expires_at value of an optional expiry.
func expiry(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// PostgreSQL text holds valid UTF-8 without NUL; Badger keys and Go
// strings hold any bytes. A key outside what text holds cannot have been
// stored, so reads of it find nothing (a client_id=%00 in a request is an
// unknown client, not a store failure), and writes of it are refused.
// Filter columns hold a cleaned copy and the exact comparison is made on
// the decoded record.

var errUnstorable = errors.New("key is not valid UTF-8 or contains NUL")

func storable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// clean maps s into what text holds, for filter columns only.
func clean(s string) string {
	if storable(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// cleanAll cleans every element and keeps a NOT NULL array column from
// receiving NULL.
func cleanAll(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = clean(s)
	}
	return out
}

var (
	clients = (&table[store.Client]{
		what: "client", name: "clients", key: "id",
		cols:    []string{"expires_at"},
		values:  func(c store.Client) []any { return []any{expiry(c.ExpiresAt)} },
		expires: true,
		keyOf:   func(c store.Client) string { return c.ID },
		setKey:  func(c *store.Client, k string) { c.ID = k },
		version: func(c *store.Client) *uint64 { return &c.Version },
	}).build()

	grants = (&table[store.Grant]{
		what: "grant", name: "grants", key: "id",
		cols: []string{"subject", "client_id", "servers", "revoked"},
		values: func(g store.Grant) []any {
			return []any{clean(g.Subject), clean(g.ClientID), cleanAll(g.Servers), g.Revoked()}
		},
		keyOf:   func(g store.Grant) string { return g.ID },
		setKey:  func(g *store.Grant, k string) { g.ID = k },
		version: func(g *store.Grant) *uint64 { return &g.Version },
	}).build()

	handles = (&table[store.Handle]{
		what: "handle", name: "handles", key: "digest",
		cols:    []string{"grant_id", "expires_at"},
		values:  func(h store.Handle) []any { return []any{clean(h.GrantID), h.ExpiresAt} },
		expires: true,
		keyOf:   func(h store.Handle) string { return h.Digest },
		setKey:  func(h *store.Handle, k string) { h.Digest = k },
		version: func(h *store.Handle) *uint64 { return &h.Version },
	}).build()

	servers = (&table[store.Server]{
		what: "server", name: "servers", key: "name",
		values:  func(store.Server) []any { return nil },
		keyOf:   func(s store.Server) string { return s.Name },
		setKey:  func(s *store.Server, k string) { s.Name = k },
		version: func(s *store.Server) *uint64 { return &s.Version },
	}).build()
)

// ---- clients ----

func (s *Store) CreateClient(ctx context.Context, c store.Client) error {
	if c.ID == "" {
		return errors.New("client id is empty")
	}
	if err := create(ctx, s, clients, c); err != nil {
		return fmt.Errorf("create client %q: %w", c.ID, err)
	}
	return nil
}

func (s *Store) GetClient(ctx context.Context, id string) (store.Client, error) {
	c, err := get(ctx, s, clients, id)
	if err != nil {
		return store.Client{}, fmt.Errorf("get client %q: %w", id, err)
	}
	return c, nil
}

func (s *Store) UpdateClient(ctx context.Context, id string, fn func(store.Client) (store.Client, error)) error {
	if err := update(ctx, s, clients, id, fn); err != nil {
		return fmt.Errorf("update client %q: %w", id, err)
	}
	return nil
}

func (s *Store) DeleteClient(ctx context.Context, id string) error {
	if err := remove(ctx, s, clients, id); err != nil {
		return fmt.Errorf("delete client %q: %w", id, err)
	}
	return nil
}

func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	out, err := list[store.Client](ctx, s, "client", clients.listSQL, s.now())
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	return out, nil
}

// ---- grants ----

func (s *Store) CreateGrant(ctx context.Context, g store.Grant) error {
	if g.ID == "" {
		return errors.New("grant id is empty")
	}
	defer s.grantWrite(g.ID)()
	if err := create(ctx, s, grants, g); err != nil {
		return fmt.Errorf("create grant %q: %w", g.ID, err)
	}
	return nil
}

func (s *Store) GetGrant(ctx context.Context, id string) (store.Grant, error) {
	g, err := get(ctx, s, grants, id)
	if err != nil {
		return store.Grant{}, fmt.Errorf("get grant %q: %w", id, err)
	}
	return g, nil
}

func (s *Store) UpdateGrant(ctx context.Context, id string, fn func(store.Grant) (store.Grant, error)) error {
	defer s.grantWrite(id)()
	if err := update(ctx, s, grants, id, fn); err != nil {
		return fmt.Errorf("update grant %q: %w", id, err)
	}
	return nil
}

func (s *Store) DeleteGrant(ctx context.Context, id string) error {
	defer s.grantWrite(id)()
	if err := remove(ctx, s, grants, id); err != nil {
		return fmt.Errorf("delete grant %q: %w", id, err)
	}
	db, err := s.db()
	if err != nil {
		return err
	}
	// The uses of a deleted grant say nothing any more; left behind they
	// would only take space (nothing lists uses without their grant).
	if _, err := db.Exec(ctx, "DELETE FROM last_use WHERE grant_id = $1", id); err != nil {
		return fmt.Errorf("delete last uses of grant %q: %w", id, err)
	}
	return nil
}

// ListGrants narrows in SQL on the indexed columns and keeps what the
// filter's Match, the definition for every backend, keeps.
func (s *Store) ListGrants(ctx context.Context, f store.GrantFilter) ([]store.Grant, error) {
	q := "SELECT data FROM grants WHERE ($1 = '' OR subject = $1) AND ($2 = '' OR client_id = $2) AND ($3 = '' OR servers @> ARRAY[$3]) AND ($4 OR NOT revoked) ORDER BY id"
	all, err := list[store.Grant](ctx, s, "grant", q, clean(f.Subject), clean(f.ClientID), clean(f.Server), f.IncludeRevoked)
	if err != nil {
		return nil, fmt.Errorf("list grants: %w", err)
	}
	out := all[:0]
	for _, g := range all {
		if f.Match(g) {
			out = append(out, g)
		}
	}
	return out, nil
}

// ---- handles ----

func (s *Store) CreateHandle(ctx context.Context, h store.Handle) error {
	if h.Digest == "" {
		return errors.New("handle digest is empty")
	}
	if h.ExpiresAt.IsZero() {
		return errors.New("handle has no expiry")
	}
	defer s.handleWrite(h.Digest)()
	if err := create(ctx, s, handles, h); err != nil {
		return fmt.Errorf("create %s handle: %w", h.Kind, err)
	}
	return nil
}

// Handle errors leave the digest out: it is not secret, but it identifies
// a live credential and error strings reach logs.

func (s *Store) GetHandle(ctx context.Context, digest string) (store.Handle, error) {
	h, err := get(ctx, s, handles, digest)
	if err != nil {
		return store.Handle{}, fmt.Errorf("get handle: %w", err)
	}
	return h, nil
}

func (s *Store) UpdateHandle(ctx context.Context, digest string, fn func(store.Handle) (store.Handle, error)) error {
	defer s.handleWrite(digest)()
	if err := update(ctx, s, handles, digest, fn); err != nil {
		return fmt.Errorf("update handle: %w", err)
	}
	return nil
}

func (s *Store) DeleteHandle(ctx context.Context, digest string) error {
	defer s.handleWrite(digest)()
	if err := remove(ctx, s, handles, digest); err != nil {
		return fmt.Errorf("delete handle: %w", err)
	}
	return nil
}

const resolveSQL = `SELECT h.data, g.data FROM handles h JOIN grants g ON g.id = h.grant_id WHERE h.digest = $1 AND h.expires_at > $2`

// ResolveHandle reads the handle and its grant in one statement, so both
// come from one snapshot: a grant revoked before the statement started is
// seen revoked. With ReplicaOptions it answers from the hot cache while
// the replica's lease is live (replica.go); the values are then shared
// with the cache: callers must treat their slices and maps as read-only.
func (s *Store) ResolveHandle(ctx context.Context, digest string) (store.Handle, store.Grant, error) {
	db, err := s.db()
	if err != nil {
		return store.Handle{}, store.Grant{}, fmt.Errorf("resolve handle: %w", err)
	}
	if !storable(digest) {
		return store.Handle{}, store.Grant{}, fmt.Errorf("resolve handle: %w", store.ErrNotFound)
	}
	r := s.replica
	var gen uint64
	clean := false
	if r != nil {
		if h, g, ok := r.cache.Resolve(digest); ok && r.usable() {
			if !s.now().Before(h.ExpiresAt) {
				return store.Handle{}, store.Grant{}, fmt.Errorf("resolve handle: %w", store.ErrNotFound)
			}
			return h, g, nil
		}
		gen, clean = r.cache.Snapshot()
	}
	var hraw, graw []byte
	err = db.QueryRow(ctx, resolveSQL, digest, s.now()).Scan(&hraw, &graw)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Handle{}, store.Grant{}, fmt.Errorf("resolve handle: %w", err)
	}
	h, err := decode[store.Handle]("handle", hraw)
	if err != nil {
		return store.Handle{}, store.Grant{}, fmt.Errorf("resolve handle: %w", err)
	}
	g, err := decode[store.Grant]("grant", graw)
	if err != nil {
		return store.Handle{}, store.Grant{}, fmt.Errorf("resolve handle: %w", err)
	}
	if clean && r.usable() {
		r.cache.Fill(gen, h, g)
	}
	return h, g, nil
}

// ---- servers ----

func (s *Store) CreateServer(ctx context.Context, srv store.Server) error {
	if srv.Name == "" {
		return errors.New("server name is empty")
	}
	if !storable(srv.Name) {
		return fmt.Errorf("create server %q: %w", srv.Name, errUnstorable)
	}
	srv.Version = 1
	args, err := servers.row(srv)
	if err != nil {
		return fmt.Errorf("create server %q: %w", srv.Name, err)
	}
	// Pins under a name no server has are strays: a list answer of a
	// removed server still in flight when it was removed. A server added
	// under the name starts with none (DeleteServer's rule), in the same
	// transaction.
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, servers.insertSQL, args...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrAlreadyExists
		}
		_, err = tx.Exec(ctx, "DELETE FROM tool_pins WHERE server = $1", srv.Name)
		return err
	})
	if err != nil {
		return fmt.Errorf("create server %q: %w", srv.Name, err)
	}
	return nil
}

func (s *Store) GetServer(ctx context.Context, name string) (store.Server, error) {
	srv, err := get(ctx, s, servers, name)
	if err != nil {
		return store.Server{}, fmt.Errorf("get server %q: %w", name, err)
	}
	return srv, nil
}

func (s *Store) UpdateServer(ctx context.Context, name string, fn func(store.Server) (store.Server, error)) error {
	if err := update(ctx, s, servers, name, fn); err != nil {
		return fmt.Errorf("update server %q: %w", name, err)
	}
	return nil
}

func (s *Store) DeleteServer(ctx context.Context, name string) error {
	if !storable(name) {
		return fmt.Errorf("delete server %q: %w", name, store.ErrNotFound)
	}
	// Its tool pins go in the same transaction: a server added again
	// under the name starts with none.
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, servers.deleteSQL, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		_, err = tx.Exec(ctx, "DELETE FROM tool_pins WHERE server = $1", name)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete server %q: %w", name, err)
	}
	return nil
}

func (s *Store) ListServers(ctx context.Context) ([]store.Server, error) {
	out, err := list[store.Server](ctx, s, "server", servers.listSQL)
	if err != nil {
		return nil, fmt.Errorf("list servers: %w", err)
	}
	return out, nil
}
