package warden.authz_test

import data.warden.authz

read(subject, uri) := {
	"version": 1,
	"subject": subject,
	"client": {"id": "c1", "kind": "user"},
	"server": {"name": "files", "labels": {}},
	"mcp": {"kind": "request", "method": "resources/read", "id": 1, "resource": uri},
	"grant": {"servers": ["files"]},
}

finance := {"sub": "u1", "groups": [], "claims": {"team": "finance"}}

hr := {"sub": "u2", "groups": ["staff", "team-hr"], "claims": {}}

test_team_reads_its_files if {
	authz.decision.allow with input as read(finance, "file:///teams/finance/q3/report.csv")
	authz.decision.allow with input as read(hr, "file:///teams/hr/salaries.csv")
}

test_team_cannot_read_other_team if {
	d := authz.decision with input as read(finance, "file:///teams/hr/salaries.csv")
	not d.allow
	d.reason == `resource "file:///teams/hr/salaries.csv" is outside your team's directory`
}

test_prefix_must_end_at_a_segment if {
	not authz.decision.allow with input as read({"claims": {"team": "fin"}, "groups": []}, "file:///teams/finance/q3.csv")
}

test_no_escape_from_the_prefix if {
	every uri in [
		"file:///teams/finance/../hr/salaries.csv",
		"file:///teams/finance/./../hr/x",
		"file:///teams/finance/%2e%2e/hr/x",
		"file:///teams/finance/..%2fhr/x",
		"file:///teams/finance/a\\..\\..\\hr",
		"file:///teams/finance//etc/passwd",
		"file:///teams/finance/",
		"file:///teams/finance",
		"FILE:///teams/finance/x",
	] {
		not authz.decision.allow with input as read(finance, uri)
	}
}

test_no_team_no_resources if {
	not authz.decision.allow with input as read({"claims": {}, "groups": ["staff"]}, "file:///teams/finance/x")
	not authz.decision.allow with input as read({"claims": {"team": "../hr"}, "groups": []}, "file:///teams/../hr/x")
}

test_subscribe_is_checked_too if {
	not authz.decision.allow with input as object.union(read(finance, "file:///teams/hr/x"), {"mcp": {"method": "resources/subscribe"}})
}

test_listing_and_tools_are_not_restricted if {
	authz.decision.allow with input as object.union(read(finance, ""), {"mcp": {"method": "resources/list"}})
	authz.decision.allow with input as object.union(read(finance, ""), {"mcp": {"method": "tools/call", "tool": "search"}})
}
