package store

import (
	"context"
	"encoding/json"
	"time"
)

// ToolPin is what Warden pinned of one tool of one server: the digest of
// the definition an admin (or the server's pinning mode) approved, and of
// the definition the server showed last. Approved == Seen: the tool is
// as approved; Approved != Seen: it changed; Approved == "": a new tool
// waiting for approval (pinning mode block, new tools wait).
type ToolPin struct {
	Server string `json:"server"`
	Tool   string `json:"tool"`
	// Approved and ApprovedDefinition are the approved definition's
	// digest ("sha256:<hex>") and canonical JSON; empty until approved.
	Approved           string          `json:"approved,omitempty"`
	ApprovedDefinition json.RawMessage `json:"approved_definition,omitempty"`
	// Seen and SeenDefinition are the definition last listed by the server.
	Seen           string          `json:"seen"`
	SeenDefinition json.RawMessage `json:"seen_definition"`
	FirstSeen      time.Time       `json:"first_seen"`
	// SeenAt is when Seen was first listed (not refreshed while it stays).
	SeenAt     time.Time `json:"seen_at"`
	ApprovedAt time.Time `json:"approved_at,omitzero"`
	// ApprovedBy is the actor that approved: an admin principal's name,
	// or "pinning:first-seen" when the mode approved it on first sight.
	ApprovedBy string `json:"approved_by,omitempty"`
	Version    uint64 `json:"version"`
}

// ToolPins is the part of Store tool pinning uses. Pins are keyed by
// server and tool name; a tool name that a backend cannot hold as a key
// (NUL, invalid UTF-8) is refused on create and reads as not found.
type ToolPins interface {
	// CreateToolPin stores a new pin (Version 1), or ErrAlreadyExists.
	CreateToolPin(ctx context.Context, p ToolPin) error
	GetToolPin(ctx context.Context, server, tool string) (ToolPin, error)
	// UpdateToolPin is compare-and-swap like every Update; the server and
	// tool cannot change.
	UpdateToolPin(ctx context.Context, server, tool string, update func(ToolPin) (ToolPin, error)) error
	// ListToolPins returns the pins of server ("" : of every server),
	// ordered by server then tool.
	ListToolPins(ctx context.Context, server string) ([]ToolPin, error)
}
