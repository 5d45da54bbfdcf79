package warden.authz_test

import data.warden.authz

sql(query) := {
	"version": 1,
	"subject": {"sub": "u1", "groups": [], "claims": {}},
	"client": {"id": "c1", "kind": "user"},
	"server": {"name": "bi", "labels": {}},
	"mcp": {"kind": "request", "method": "tools/call", "id": 1, "tool": "run_sql", "arguments": {"query": query}},
	"grant": {"servers": ["bi"]},
}

test_refuses_drop_and_delete if {
	every q in [
		"DROP TABLE users",
		"drop table users",
		"  DeLeTe FROM users",
		"DELETE\tFROM users WHERE 1=1",
		"select 1;\nDROP TABLE users",
		"select 1; -- cleanup\nDELETE FROM users",
		"/* tidy */DROP/**/TABLE users",
		"select 1 /*! DROP TABLE users */",
	] {
		d := authz.decision with input as sql(q)
		not d.allow
	}
}

test_reason_names_the_statement if {
	d := authz.decision with input as sql("select 1; drop table users")
	d.reason == `tool "run_sql" does not allow DROP statements`
}

test_allows_reads if {
	every q in [
		"SELECT * FROM sales",
		"select * from t where deleted_at is null",
		"select dropped_count from stats",
		"UPDATE t SET x = 1",
	] {
		authz.decision.allow with input as sql(q)
	}
}

test_refuses_query_that_is_not_a_string if {
	d := authz.decision with input as sql(["DROP TABLE users"])
	not d.allow
	d.reason == `tool "run_sql" needs the SQL text in string argument "query"`
}

test_refuses_missing_query if {
	not authz.decision.allow with input as json.remove(sql(""), ["mcp/arguments/query"])
}

test_other_tools_are_not_inspected if {
	authz.decision.allow with input as object.union(sql(""), {"mcp": {"tool": "search", "arguments": {"q": "drop"}}})
}
