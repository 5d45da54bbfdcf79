// Package replay re-evaluates the decision inputs recorded in the audit
// trail against a candidate policy and lists the decisions that would
// change, so that a policy change can be judged before it ships.
//
// Every decision the policy made carries the input documents it was
// decided on (store.AuditEvent.Input, written by policy.AppendRecord). The
// replay decides each of them with the candidate as the request path does:
// a check is allowed only if every input is, and its reason is that of the
// first denial. Tool arguments the trail redacted reach the candidate as
// policy.Redacted; a change on such an input is marked, since the
// candidate did not see what was sent.
package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"testing/fstest"
	"time"

	"github.com/warden-mcp/warden/internal/auditquery"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/policy"
)

// Request is the body of POST /api/v1/policy/replay.
type Request struct {
	// Modules is the whole candidate policy: file name → content, Rego
	// modules (.rego) and data files (.json, .yaml).
	Modules map[string]string `json:"modules"`
	// Since is an RFC 3339 time or a duration back from now; DefaultSince
	// when empty.
	Since string `json:"since,omitempty"`
	// Server limits the replay to one server's decisions.
	Server string `json:"server,omitempty"`
	// Limit bounds the decisions evaluated (the oldest since Since);
	// DefaultLimit when zero, at most MaxLimit.
	Limit int `json:"limit,omitempty"`
}

// Result is the answer of a replay.
type Result struct {
	Evaluated   int       `json:"evaluated"`
	AllowToDeny int       `json:"allow_to_deny"`
	DenyToAllow int       `json:"deny_to_allow"`
	Changed     []Changed `json:"changed"`
	// Skipped counts decisions that carry no recorded input (recorded by
	// an older Warden, or decided before policy ran): not evaluated.
	Skipped int `json:"skipped,omitempty"`
	// Redacted counts evaluated decisions whose inputs had redacted
	// arguments while the candidate reads arguments.
	Redacted int `json:"redacted,omitempty"`
}

// Changed is one decision the candidate would decide otherwise.
type Changed struct {
	Time        time.Time `json:"time"`
	Subject     string    `json:"subject"`
	ClientID    string    `json:"client_id"`
	Server      string    `json:"server"`
	Method      string    `json:"method"`
	Tool        string    `json:"tool"`
	OldDecision string    `json:"old_decision"`
	NewDecision string    `json:"new_decision"`
	OldReason   string    `json:"old_reason"`
	NewReason   string    `json:"new_reason"`
	RequestID   string    `json:"request_id"`
	// Redacted names the arguments the candidate saw as policy.Redacted
	// instead of their value: the change may be due to the redaction.
	Redacted []string `json:"redacted,omitempty"`
}

// Limits of a request.
const (
	DefaultSince = 24 * time.Hour
	DefaultLimit = 1000
	MaxLimit     = 100000
)

// ErrInvalid marks a request that cannot be replayed as sent: a candidate
// that does not compile, a bad time or limit. Its message says why (the
// compiler's errors with file:line).
var ErrInvalid = errors.New("invalid replay request")

// Options configure a Replayer.
type Options struct {
	// Store is the audit trail read (through store.ListAudit only).
	Store auditquery.Store
	Now   func() time.Time
}

// Replayer runs replays; it is safe for concurrent use.
type Replayer struct{ o Options }

// New returns a Replayer.
func New(o Options) *Replayer {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Replayer{o: o}
}

var errLimit = errors.New("limit reached")

// Run replays the recorded decisions req selects against req's candidate.
func (r *Replayer) Run(ctx context.Context, req Request) (Result, error) {
	cand, err := Compile(req.Modules)
	if err != nil {
		return Result{}, err
	}
	q := auditquery.Query{Type: "decision", Server: strings.TrimSpace(req.Server)}
	if strings.TrimSpace(req.Since) == "" {
		q.Since = r.o.Now().Add(-DefaultSince)
	} else if q.Since, err = auditquery.ParseTime(req.Since, r.o.Now()); err != nil {
		return Result{}, fmt.Errorf("%w: since: %v", ErrInvalid, err)
	}
	limit := req.Limit
	switch {
	case limit < 0 || limit > MaxLimit:
		return Result{}, fmt.Errorf("%w: limit must be between 1 and %d, got %d", ErrInvalid, MaxLimit, limit)
	case limit == 0:
		limit = DefaultLimit
	}
	res := Result{Changed: []Changed{}}
	readsArgs := cand.Needs().Arguments
	err = auditquery.Each(ctx, r.o.Store, q, func(ev *store.AuditEvent) error {
		if len(ev.Input) == 0 {
			res.Skipped++
			return nil
		}
		if res.Evaluated == limit {
			return errLimit
		}
		allow, reason, err := decide(ctx, cand, ev.Input)
		if err != nil {
			return fmt.Errorf("audit event %d: %w", ev.Seq, err)
		}
		res.Evaluated++
		redacted := readsArgs && len(ev.Redacted) > 0
		if redacted {
			res.Redacted++
		}
		was := ev.Decision == "allow"
		if allow == was {
			return nil
		}
		c := Changed{Time: ev.Time, Subject: ev.Subject, ClientID: ev.ClientID, Server: ev.Server, Method: ev.Method, Tool: ev.Tool,
			OldDecision: ev.Decision, NewDecision: "deny", OldReason: ev.Reason, NewReason: reason, RequestID: ev.RequestID}
		if allow {
			c.NewDecision = "allow"
			res.DenyToAllow++
		} else {
			res.AllowToDeny++
		}
		if redacted {
			c.Redacted = ev.Redacted
		}
		res.Changed = append(res.Changed, c)
		return nil
	})
	if err != nil && !errors.Is(err, errLimit) {
		return Result{}, fmt.Errorf("replay: %w", err)
	}
	return res, nil
}

// Compile compiles a candidate policy given as file name → content.
func Compile(modules map[string]string) (*policy.Engine, error) {
	if len(modules) == 0 {
		return nil, fmt.Errorf("%w: no candidate policy (modules is empty)", ErrInvalid)
	}
	fsys := fstest.MapFS{}
	for name, src := range modules {
		clean := path.Clean(strings.ReplaceAll(name, "\\", "/"))
		if name == "" || path.IsAbs(clean) || clean == "." || strings.HasPrefix(clean, "../") || clean == ".." {
			return nil, fmt.Errorf("%w: module name %q is not a relative file name", ErrInvalid, name)
		}
		switch path.Ext(clean) {
		case ".rego", ".json", ".yaml", ".yml":
		default:
			return nil, fmt.Errorf("%w: module %q is neither Rego (.rego) nor data (.json, .yaml)", ErrInvalid, name)
		}
		fsys[clean] = &fstest.MapFile{Data: []byte(src), Mode: 0o444}
	}
	e, err := policy.New(policy.Options{FS: fsys, FSName: "candidate policy"})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return e, nil
}

// decide decides a recorded check's inputs with the candidate, as the
// request path does: allowed only if every input is. A candidate that
// fails on an input denies it, as Warden would (503).
func decide(ctx context.Context, cand *policy.Engine, recorded []byte) (bool, string, error) {
	var docs []json.RawMessage
	if err := json.Unmarshal(recorded, &docs); err != nil {
		return false, "", fmt.Errorf("recorded input: %w", err)
	}
	if len(docs) == 0 {
		return false, "", errors.New("recorded input: empty")
	}
	for _, doc := range docs {
		in, err := policy.ParseRecord(doc)
		if err != nil {
			return false, "", err
		}
		d, err := cand.Decide(ctx, &in)
		if err != nil {
			if ctx.Err() != nil {
				return false, "", err
			}
			return false, "candidate policy failed: " + err.Error(), nil
		}
		if !d.Allow {
			return false, denialReason(d), nil
		}
	}
	return true, "allowed", nil
}

// denialReason is the reason the request path records for a policy
// denial (authz: policyDenied and the step-up challenge).
func denialReason(d policy.Decision) string {
	if d.Reason == "" {
		return "denied by policy"
	}
	return d.Reason
}
