package mcp

// The _meta keys MCP 2026-07-28 reserves for per-request metadata
// (basic/index, "_meta": per-request protocol fields and OpenTelemetry
// trace context).
const (
	MetaProtocolVersion = "io.modelcontextprotocol/protocolVersion"
	MetaClientInfo      = "io.modelcontextprotocol/clientInfo"
	MetaLogLevel        = "io.modelcontextprotocol/logLevel"
	MetaTraceparent     = "traceparent"
)

var metaKey = []byte("_meta")

// readMeta reads the reserved keys of params._meta. Only a protocol
// version that is not a string is an error: Warden compares it with the
// header. The others are informational (policy input, audit) and are read
// only when they have the type the schema gives them.
func readMeta(m *Message, raw []byte) *Error {
	if raw[0] != '{' {
		if string(raw) == "null" {
			return nil
		}
		return invalidParams(m.ID, "params._meta must be an object")
	}
	return eachMember(raw, func(key, value []byte, escaped bool) *Error {
		switch string(memberName(key, escaped)) {
		case MetaProtocolVersion:
			v, ok := stringValue(value)
			if !ok || v == "" {
				return invalidParams(m.ID, "_meta %s must be a non-empty string", MetaProtocolVersion)
			}
			m.setMeta().ProtocolVersion = v
		case MetaClientInfo:
			if value[0] == '{' {
				mt := m.setMeta()
				mt.ClientName, mt.ClientVersion = implementation(value)
			}
		case MetaLogLevel:
			if v, ok := stringValue(value); ok {
				m.setMeta().LogLevel = v
			}
		case MetaTraceparent:
			if v, ok := stringValue(value); ok {
				m.setMeta().Traceparent = v
			}
		}
		return nil
	})
}

// implementation reads name and version of an Implementation object.
func implementation(obj []byte) (name, version string) {
	_ = eachMember(obj, func(key, value []byte, escaped bool) *Error {
		switch string(memberName(key, escaped)) {
		case "name":
			name, _ = stringValue(value)
		case "version":
			version, _ = stringValue(value)
		}
		return nil
	})
	return name, version
}

// readListen reads the notification filter of subscriptions/listen. The
// resources and tasks it names are authorized like the calls they stand
// for, so what is there must have the schema's types; an absent filter is
// the server's to refuse.
func readListen(m *Message, raw []byte) *Error {
	l := &Listen{}
	m.Listen = l
	if raw == nil || string(raw) == "null" {
		return nil
	}
	if raw[0] != '{' {
		return invalidParams(m.ID, "subscriptions/listen params.notifications must be an object")
	}
	return eachMember(raw, func(key, value []byte, escaped bool) *Error {
		n := memberName(key, escaped)
		var err *Error
		switch string(n) {
		case "toolsListChanged":
			l.ToolsListChanged, err = boolMember(m, n, value)
		case "promptsListChanged":
			l.PromptsListChanged, err = boolMember(m, n, value)
		case "resourcesListChanged":
			l.ResourcesListChanged, err = boolMember(m, n, value)
		case "resourceSubscriptions":
			l.Resources, err = stringsMember(m, n, value)
		case "taskIds":
			l.Tasks, err = stringsMember(m, n, value)
		default:
			for _, k := range listenMembers {
				if len(k) == len(n) && string(k) != string(n) && equalFold(k, n) {
					return invalid(m.ID, "params.notifications key %q is a case variant of %q", n, k)
				}
			}
		}
		return err
	})
}

var listenMembers = []string{"toolsListChanged", "promptsListChanged", "resourcesListChanged", "resourceSubscriptions", "taskIds"}

func equalFold(a string, b []byte) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func boolMember(m *Message, name, v []byte) (bool, *Error) {
	switch string(v) {
	case "true":
		return true, nil
	case "false", "null":
		return false, nil
	}
	return false, invalidParams(m.ID, "subscriptions/listen notifications.%s must be a boolean", name)
}

func stringsMember(m *Message, name, v []byte) ([]string, *Error) {
	if string(v) == "null" {
		return nil, nil
	}
	if v[0] != '[' {
		return nil, invalidParams(m.ID, "subscriptions/listen notifications.%s must be an array of strings", name)
	}
	var out []string
	err := eachElement(v, func(e []byte) *Error {
		s, ok := stringValue(e)
		if !ok || s == "" {
			return invalidParams(m.ID, "subscriptions/listen notifications.%s must be an array of non-empty strings", name)
		}
		out = append(out, s)
		return nil
	})
	return out, err
}
