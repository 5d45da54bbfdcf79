# Worked example 2: look inside a tool's arguments.
#
# The SQL tools below refuse statements that drop or delete data. The check
# searches the whole text for DROP or DELETE as a whole word, in any case:
# comments need no stripping, because comment markers (/* */ --) are not
# word characters, so "DROP/**/TABLE" and "--x\nDELETE FROM t" still match,
# and keywords hidden inside comments (MySQL runs /*! DROP ... */) are found
# too. A column such as deleted_at does not match. The cost is that the word
# inside a string literal ('drop') is refused as well: it errs on the side
# of refusing.
package warden.authz

# Tools that take SQL, and the argument holding it.
sql_tools := {"run_sql": "query"}

sql_blocked := `(?i)\b(drop|delete)\b`

deny contains msg if {
	input.mcp.method == "tools/call"
	arg := sql_tools[input.mcp.tool]

	# object.get, not input.mcp.arguments[arg]: a missing argument must make
	# this rule match, and an undefined ref would make it fail instead.
	not is_string(object.get(input.mcp.arguments, arg, null))
	msg := sprintf("tool %q needs the SQL text in string argument %q", [input.mcp.tool, arg])
}

deny contains msg if {
	input.mcp.method == "tools/call"
	arg := sql_tools[input.mcp.tool]
	sql := input.mcp.arguments[arg]
	is_string(sql)
	regex.match(sql_blocked, sql)
	msg := sprintf("tool %q does not allow %s statements", [input.mcp.tool, upper(regex.find_n(sql_blocked, sql, 1)[0])])
}
