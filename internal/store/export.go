package store

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"time"
)

// Record is one stored record of any type, as a backend's Walk yields it
// and a restore takes it. Exactly one field is set.
type Record struct {
	Client  *Client
	Grant   *Grant
	Handle  *Handle
	Server  *Server
	Session *SessionRecord
	Consent *Consent
	// Provider and Account: upstream credentials (credentials.go).
	Provider *Provider
	Account  *Account
	ToolPin  *ToolPin
}

// SessionRecord is a stored session with its key and absolute expiry.
type SessionRecord struct {
	Kind      string
	ID        string
	Value     []byte
	ExpiresAt time.Time
}

// Walker is a backend that can read every live record in one consistent
// view: the source of a copy to another backend. Records past their expiry
// are left out, as every read leaves them out.
type Walker interface {
	Walk(ctx context.Context, fn func(Record) error) error
}

// Counts tallies records by type.
type Counts struct {
	Clients     int `json:"clients"`
	Grants      int `json:"grants"`
	Handles     int `json:"handles"`
	Servers     int `json:"servers"`
	Sessions    int `json:"sessions"`
	Consents    int `json:"consents"`
	ToolPins    int `json:"tool_pins"`
	AuditEvents int `json:"audit_events"`
	// AuditCheckpoints: the signed checkpoints of a pruned trail.
	AuditCheckpoints int `json:"audit_checkpoints,omitempty"`
	Providers        int `json:"providers,omitempty"`
	Accounts         int `json:"accounts,omitempty"`
}

// Add counts r.
func (c *Counts) Add(r Record) {
	switch {
	case r.Client != nil:
		c.Clients++
	case r.Grant != nil:
		c.Grants++
	case r.Handle != nil:
		c.Handles++
	case r.Server != nil:
		c.Servers++
	case r.Session != nil:
		c.Sessions++
	case r.Consent != nil:
		c.Consents++
	case r.Provider != nil:
		c.Providers++
	case r.Account != nil:
		c.Accounts++
	case r.ToolPin != nil:
		c.ToolPins++
	}
}

func (c Counts) String() string {
	return fmt.Sprintf("%d clients, %d grants, %d handles, %d servers, %d sessions, %d consents, %d tool pins, %d audit events, %d audit checkpoints",
		c.Clients, c.Grants, c.Handles, c.Servers, c.Sessions, c.Consents, c.ToolPins, c.AuditEvents, c.AuditCheckpoints)
}

// Count walks w and tallies what it holds, audit events aside.
func Count(ctx context.Context, w Walker) (Counts, error) {
	var c Counts
	err := w.Walk(ctx, func(r Record) error { c.Add(r); return nil })
	return c, err
}

// Compare walks a and b and reports the first record that differs, or a
// difference in number. Walks yield records in key order, so two stores
// holding the same records yield them in the same order.
func Compare(ctx context.Context, a, b Walker) error {
	var left, right []Record
	if err := a.Walk(ctx, func(r Record) error { left = append(left, r); return nil }); err != nil {
		return err
	}
	if err := b.Walk(ctx, func(r Record) error { right = append(right, r); return nil }); err != nil {
		return err
	}
	for i := 0; i < min(len(left), len(right)); i++ {
		if !sameRecord(left[i], right[i]) {
			return fmt.Errorf("record %d differs: %s", i, describe(left[i]))
		}
	}
	if len(left) != len(right) {
		return fmt.Errorf("%d records against %d", len(left), len(right))
	}
	return nil
}

func sameRecord(a, b Record) bool {
	if a.Session != nil && b.Session != nil {
		// A session's expiry is a column, not a JSON document: backends
		// keep it at their own precision (PostgreSQL: microseconds).
		x, y := *a.Session, *b.Session
		return x.Kind == y.Kind && x.ID == y.ID && bytes.Equal(x.Value, y.Value) &&
			x.ExpiresAt.Truncate(time.Microsecond).Equal(y.ExpiresAt.Truncate(time.Microsecond))
	}
	return reflect.DeepEqual(a, b)
}

// describe names a record without its secrets.
func describe(r Record) string {
	switch {
	case r.Client != nil:
		return "client " + r.Client.ID
	case r.Grant != nil:
		return "grant " + r.Grant.ID
	case r.Handle != nil:
		return "a handle of grant " + r.Handle.GrantID
	case r.Server != nil:
		return "server " + r.Server.Name
	case r.Provider != nil:
		return "provider " + r.Provider.Name
	case r.Account != nil:
		return "an account at provider " + r.Account.Provider
	case r.Session != nil:
		return "a session of kind " + r.Session.Kind
	case r.Consent != nil:
		return "consent of " + r.Consent.Subject + " for " + r.Consent.ClientID
	case r.ToolPin != nil:
		return "tool pin of " + r.ToolPin.Tool + " on " + r.ToolPin.Server
	}
	return "empty record"
}
