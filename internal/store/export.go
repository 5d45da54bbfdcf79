package store

import (
	"context"
	"fmt"
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
	AuditEvents int `json:"audit_events"`
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
	}
}

func (c Counts) String() string {
	return fmt.Sprintf("%d clients, %d grants, %d handles, %d servers, %d sessions, %d consents, %d audit events",
		c.Clients, c.Grants, c.Handles, c.Servers, c.Sessions, c.Consents, c.AuditEvents)
}

// Count walks w and tallies what it holds, audit events aside.
func Count(ctx context.Context, w Walker) (Counts, error) {
	var c Counts
	err := w.Walk(ctx, func(r Record) error { c.Add(r); return nil })
	return c, err
}
