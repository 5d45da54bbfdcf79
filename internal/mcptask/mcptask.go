// Package mcptask remembers which call created each MCP task (the tasks
// extension, io.modelcontextprotocol/tasks, SEP-2663), so that Warden can
// authorize tasks/get, tasks/update and tasks/cancel like that call: the
// same caller, the same tool, the same arguments.
//
// A task id is minted by the server in its answer to tools/call (a
// CreateTaskResult, resultType "task"), so only the response path sees
// it: it calls RecordResult with the call's Origin and the result. The
// request path calls Lookup. A task is found only on the server it was
// created on, and the spec lets servers use task ids as bearer handles
// to their state, so the store keeps a digest of (server, task id), never
// the id.
package mcptask

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/warden-mcp/warden/internal/handle"
	"github.com/warden-mcp/warden/internal/store"
)

// Origin is the call that created a task.
type Origin struct {
	Server   string `json:"server"`
	Subject  string `json:"subject"`
	ClientID string `json:"client_id"`
	// GrantID is the grant the call was made on, for the audit trail; a
	// task belongs to the subject and client, not to one grant (a new
	// sign-in makes a new grant).
	GrantID string `json:"grant_id,omitempty"`
	Tool    string `json:"tool"`
	// Arguments is the raw JSON of the call's arguments (absent: none).
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// Owns reports whether subject and clientID are the caller that created
// the task.
func (o Origin) Owns(subject, clientID string) bool {
	return o.Subject == subject && o.ClientID == clientID
}

// Sessions is the part of store.Store tasks live in (kind "mcp_task"),
// and held call arguments (kind "mcp_call_arguments").
type Sessions interface {
	PutSession(ctx context.Context, kind, id string, value []byte, ttl time.Duration) error
	GetSession(ctx context.Context, kind, id string) ([]byte, error)
	TakeSession(ctx context.Context, kind, id string) ([]byte, error)
}

// Options bound how long a task is remembered.
type Options struct {
	// MaxTTL caps a task's ttlMs, and stands for a task without one (null:
	// unlimited). 24h when zero.
	MaxTTL time.Duration
}

// Store records and finds task origins.
type Store struct {
	s      Sessions
	maxTTL time.Duration
}

const (
	kind          = "mcp_task"
	argumentsKind = "mcp_call_arguments"
)

// HeldArgumentsTTL is how long held arguments wait for their call's
// result: the default xds.max_stream_duration, after which Envoy has
// ended the request and no result can come.
const HeldArgumentsTTL = time.Hour

// ErrNotFound: no task of that id was created on that server through
// Warden (or it expired).
var ErrNotFound = errors.New("mcptask: unknown task")

// New returns a Store over s.
func New(s Sessions, o Options) *Store {
	if o.MaxTTL <= 0 {
		o.MaxTTL = 24 * time.Hour
	}
	return &Store{s: s, maxTTL: o.MaxTTL}
}

func key(server, taskID string) string {
	sum := sha256.Sum256([]byte(server + "\x00" + taskID))
	return hex.EncodeToString(sum[:])
}

// Record remembers that o created taskID, for ttl (capped at MaxTTL;
// zero or less: MaxTTL).
func (t *Store) Record(ctx context.Context, o Origin, taskID string, ttl time.Duration) error {
	if o.Server == "" || taskID == "" {
		return errors.New("mcptask: a task needs a server and an id")
	}
	if ttl <= 0 || ttl > t.maxTTL {
		ttl = t.maxTTL
	}
	v, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("mcptask: %w", err)
	}
	if err := t.s.PutSession(ctx, kind, key(o.Server, taskID), v, ttl); err != nil {
		return fmt.Errorf("mcptask: record task: %w", err)
	}
	return nil
}

// Lookup returns the origin of taskID on server, or ErrNotFound.
func (t *Store) Lookup(ctx context.Context, server, taskID string) (Origin, error) {
	v, err := t.s.GetSession(ctx, kind, key(server, taskID))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Origin{}, ErrNotFound
	case err != nil:
		return Origin{}, fmt.Errorf("mcptask: look up task: %w", err)
	}
	var o Origin
	if err := json.Unmarshal(v, &o); err != nil {
		return Origin{}, fmt.Errorf("mcptask: stored task: %w", err)
	}
	return o, nil
}

// RecordResult records the task a tools/call result creates. result is
// the JSON-RPC response's result member: a CreateTaskResult of the tasks
// extension (resultType "task", taskId, ttlMs in milliseconds or null for
// unlimited) or of 2025-11-25's experimental tasks ({"task": {"taskId",
// "ttl"}}). It reports the task id when the result created one, ""
// otherwise.
func (t *Store) RecordResult(ctx context.Context, o Origin, result json.RawMessage) (string, error) {
	var r struct {
		ResultType string   `json:"resultType"`
		TaskID     string   `json:"taskId"`
		TTL        *float64 `json:"ttlMs"`
		Legacy     *struct {
			TaskID string   `json:"taskId"`
			TTL    *float64 `json:"ttl"`
		} `json:"task"`
	}
	if err := json.Unmarshal(result, &r); err != nil {
		return "", fmt.Errorf("mcptask: tools/call result: %w", err)
	}
	switch {
	case r.ResultType == "task":
	case r.ResultType == "" && r.Legacy != nil:
		r.TaskID, r.TTL = r.Legacy.TaskID, r.Legacy.TTL
	default:
		return "", nil
	}
	if r.TaskID == "" {
		return "", errors.New("mcptask: a CreateTaskResult without a taskId")
	}
	// ttlMs may grow over the task's life: remember it at least an hour.
	ttl := time.Hour
	if r.TTL == nil {
		ttl = t.maxTTL
	} else if *r.TTL < float64(t.maxTTL/time.Millisecond) {
		ttl = max(ttl, time.Duration(*r.TTL)*time.Millisecond)
	}
	return r.TaskID, t.Record(ctx, o, r.TaskID, ttl)
}

// ArgumentsDigest is the digest a held call's metadata names its
// arguments by: "sha256:" and the hex SHA-256 of their raw JSON.
func ArgumentsDigest(args []byte) string {
	sum := sha256.Sum256(args)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// HoldArguments keeps the arguments of a tools/call too large for Envoy's
// dynamic metadata until the response path takes them (TakeArguments)
// with the call's result, for the task the result may create. It returns
// the reference the metadata carries; the store keys the arguments by the
// reference's digest, so the store alone cannot read them back for a call.
func (t *Store) HoldArguments(ctx context.Context, args []byte) (string, error) {
	ref, digest := handle.New("")
	if err := t.s.PutSession(ctx, argumentsKind, digest, args, HeldArgumentsTTL); err != nil {
		return "", fmt.Errorf("mcptask: hold call arguments: %w", err)
	}
	return ref, nil
}

// ErrArgumentsMismatch: the held arguments are not the ones the call's
// metadata names.
var ErrArgumentsMismatch = errors.New("mcptask: held arguments do not match their digest")

// TakeArguments returns and forgets the arguments held under ref, which
// must have the digest the call's metadata names (ArgumentsDigest). Held
// arguments are taken once: a second take is store.ErrNotFound.
func (t *Store) TakeArguments(ctx context.Context, ref, digest string) (json.RawMessage, error) {
	if ref == "" {
		return nil, fmt.Errorf("mcptask: take call arguments: %w", store.ErrNotFound)
	}
	v, err := t.s.TakeSession(ctx, argumentsKind, handle.Digest(ref))
	if err != nil {
		return nil, fmt.Errorf("mcptask: take call arguments: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(ArgumentsDigest(v)), []byte(digest)) != 1 {
		return nil, ErrArgumentsMismatch
	}
	return v, nil
}
