package auditsink

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/warden-mcp/warden/internal/store"
)

// OCSFVersion is the OCSF schema version the mapping follows.
const OCSFVersion = "1.3.0"

// OCSF API Activity (class 6003, category 6 Application Activity).
const (
	ocsfClassAPIActivity = 6003
	ocsfCategory         = 6
	// Activity ids of API Activity: 1 Create, 2 Read, 3 Update, 4 Delete,
	// 99 Other.
	ocsfActivityCreate = 1
	ocsfActivityUpdate = 3
	ocsfActivityDelete = 4
	ocsfActivityOther  = 99
)

// activityOf maps an event type to the API Activity it is closest to.
func activityOf(ev store.AuditEvent) (int, string) {
	switch ev.Type {
	case "decision":
		return ocsfActivityOther, "Other"
	case "token", "token_issued", "code_issued", "client_registered", "server_added", "grant_issued":
		return ocsfActivityCreate, "Create"
	case "revoke", "token_revoked", "grant_revoked", "client_deleted", "server_removed":
		return ocsfActivityDelete, "Delete"
	case "server_updated", "key_rotated", "service_access":
		return ocsfActivityUpdate, "Update"
	}
	return ocsfActivityOther, "Other"
}

// ToOCSF maps one stored event (its JSON line) to an OCSF API Activity
// event. What OCSF has no attribute for (the chain's seq and hashes, the
// policy revision, grant and client ids) is kept under unmapped, so the
// mapping loses nothing the trail holds.
func ToOCSF(line []byte) ([]byte, error) {
	var ev store.AuditEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		return nil, fmt.Errorf("ocsf: %w", err)
	}
	activity, activityName := activityOf(ev)
	statusID, status := 0, "Unknown"
	switch ev.Decision {
	case "allow":
		statusID, status = 1, "Success"
	case "deny":
		statusID, status = 2, "Failure"
	}
	severity, severityName := 1, "Informational"
	if ev.Type == "audit_gap" {
		severity, severityName = 3, "Medium"
	}
	actor := map[string]any{}
	user := map[string]any{}
	if ev.Subject != "" {
		user["uid"], user["name"] = ev.Subject, ev.Subject
		user["type"] = map[store.Kind]string{"service": "System"}[ev.Kind]
		if user["type"] == "" {
			user["type"] = "User"
		}
	}
	if ev.Actor != "" {
		actor["app_name"] = ev.Actor
	}
	if len(user) > 0 {
		actor["user"] = user
	}
	out := map[string]any{
		"class_uid":     ocsfClassAPIActivity,
		"class_name":    "API Activity",
		"category_uid":  ocsfCategory,
		"category_name": "Application Activity",
		"activity_id":   activity,
		"activity_name": activityName,
		"type_uid":      ocsfClassAPIActivity*100 + activity,
		"type_name":     "API Activity: " + activityName,
		"time":          ev.Time.UnixMilli(),
		"severity_id":   severity,
		"severity":      severityName,
		"status_id":     statusID,
		"status":        status,
		"metadata": map[string]any{
			"version":         OCSFVersion,
			"uid":             fmt.Sprint(ev.Seq),
			"correlation_uid": ev.RequestID,
			"log_name":        "warden-audit",
			"original_time":   ev.Time.UTC().Format(time.RFC3339Nano),
			"product":         map[string]any{"name": "Warden", "vendor_name": "Warden", "feature": map[string]any{"name": ev.Type}},
		},
		"api": map[string]any{
			"operation": firstNonEmpty(ev.Method, ev.Type),
			"service":   map[string]any{"name": ev.Server},
			"request":   map[string]any{"uid": ev.RequestID},
			"response":  map[string]any{"code": ev.Status, "message": ev.Reason},
		},
		"actor":   actor,
		"message": ev.Reason,
		"unmapped": map[string]any{
			"seq": ev.Seq, "hash": ev.Hash, "prev_hash": ev.PrevHash, "type": ev.Type,
			"client_id": ev.ClientID, "grant_id": ev.GrantID, "policy_revision": ev.PolicyRev,
			"latency_us": ev.LatencyUS, "decision": ev.Decision, "details": ev.Details,
		},
	}
	if ev.Status != 0 {
		out["status_code"] = fmt.Sprint(ev.Status)
	}
	if ev.Reason != "" {
		out["status_detail"] = ev.Reason
	}
	if ev.Tool != "" {
		out["resources"] = []map[string]any{{"name": ev.Tool, "type": "MCP tool", "group": map[string]any{"name": ev.Server}}}
	}
	return json.Marshal(out)
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
