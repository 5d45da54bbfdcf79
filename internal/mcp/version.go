package mcp

import "slices"

// Protocol revisions Warden classifies.
const (
	// Version20260728 is the stateless revision: no sessions, headers
	// mirrored from the body and validated against it.
	Version20260728 = "2026-07-28"
	// Version20250326 is what a request without MCP-Protocol-Version is
	// taken to be (2025-06-18 introduced the header; the 2026-07-28
	// transport lets a server that supports older clients assume it).
	Version20250326 = "2025-03-26"
)

// SupportedVersions are the MCP-Protocol-Version values Warden can
// classify, newest first: what an UnsupportedProtocolVersion error lists.
var SupportedVersions = []string{Version20260728, "2025-11-25", "2025-06-18", Version20250326, "2024-11-05"}

// revision tells whether version selects the 2026-07-28 rules.
//
// A version Warden does not know is refused with -32022 and the list of
// versions it knows, as a server that does not implement a requested
// version must answer (basic/versioning, "Protocol Version Negotiation"):
// Warden cannot tell what the body of an unknown revision asks the server
// to do, and authorizing a body it may misread would fail open. The client
// retries with a listed version; the upstream may in turn refuse one it
// does not serve, with its own list.
func revision(version string) (modern bool, err *Error) {
	switch version {
	case Version20260728:
		return true, nil
	case "":
		return false, nil
	}
	if slices.Contains(SupportedVersions, version) {
		return false, nil
	}
	return false, &Error{
		Kind:    ErrorUnsupportedVersion,
		Code:    CodeUnsupportedProtocolVersion,
		Message: "Unsupported protocol version",
		Data:    UnsupportedVersionData{Supported: SupportedVersions, Requested: version},
	}
}

// UnsupportedVersionData is the data member of an UnsupportedProtocolVersion
// error (schema.ts UnsupportedProtocolVersionError).
type UnsupportedVersionData struct {
	Supported []string `json:"supported"`
	Requested string   `json:"requested"`
}

// checkMeta requires, in every revision, that a message naming its
// protocol version in _meta names the one of the MCP-Protocol-Version
// header: a server that serves both revisions picks its rules from the
// body, Warden from the header, and both must pick the same.
func checkMeta(r *Request) *Error {
	for i := range r.Messages {
		m := &r.Messages[i]
		v := m.Metadata().ProtocolVersion
		switch {
		case v == "" || v == r.ProtocolVersion:
		case r.ProtocolVersion == "":
			return mismatch(m.ID, "MCP-Protocol-Version header is required: the body's _meta names protocol version %q", v)
		default:
			return mismatch(m.ID, "MCP-Protocol-Version header %q does not match the body's _meta protocol version %q", r.ProtocolVersion, v)
		}
	}
	return nil
}

func mismatch(id []byte, f string, a ...any) *Error {
	e := invalid(id, f, a...)
	e.Kind, e.Code = ErrorHeaderMismatch, CodeHeaderMismatch
	e.Message = "Header mismatch: " + e.Message
	return e
}
