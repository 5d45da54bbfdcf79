# Worked example 3: resources limited to the caller's team.
#
# resources/read (and subscribe/unsubscribe) may only name URIs under
# file:///teams/<team>/, where <team> comes from the IdP claim "team" or
# from a group named "team-<team>". The rest of the URI must be plain path
# segments: no "." or ".." segments, no percent-encoding (which could hide
# them), no backslashes, so a URI cannot climb out of the prefix.
#
# resources/list shows only what resources/read would be allowed for (the
# response path asks this policy about each listed URI).
package warden.authz

resource_methods := {"resources/read", "resources/subscribe", "resources/unsubscribe"}

teams contains team if {
	team := input.subject.claims.team
	valid_team(team)
}

teams contains team if {
	some group in input.subject.groups
	startswith(group, "team-")
	team := substring(group, 5, -1)
	valid_team(team)
}

valid_team(team) if {
	is_string(team)
	regex.match(`^[a-z0-9][a-z0-9-]*$`, team)
}

deny contains msg if {
	input.mcp.method in resource_methods
	not in_team_directory(input.mcp.resource)
	msg := sprintf("resource %q is outside your team's directory", [input.mcp.resource])
}

in_team_directory(uri) if {
	some team in teams
	prefix := concat("", ["file:///teams/", team, "/"])
	startswith(uri, prefix)
	regex.match(`^[A-Za-z0-9_~-][A-Za-z0-9._~-]*(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*$`, substring(uri, count(prefix), -1))
}
