// Package policy: temporary type declarations so authz compiles on main
// until the policy branch lands; deleted at that merge.
package policy

type Input struct {
	Version int     `json:"version"`
	Subject Subject `json:"subject"`
	Client  Client  `json:"client"`
	Server  Server  `json:"server"`
	MCP     MCP     `json:"mcp"`
	Request Request `json:"request"`
	Grant   Grant   `json:"grant"`
}
type Subject struct {
	Sub, Email, Name string
	Groups           []string
	Claims           map[string]any
}
type Client struct{ ID, Name, Kind string }
type Server struct {
	Name   string
	Labels map[string]string
}
type MCP struct {
	Kind, Method             string
	ID                       any
	Tool                     string
	Arguments                map[string]any
	Resource, Prompt         string
	Session, ProtocolVersion string
	Batch                    bool
	BatchSize                int
}
type Request struct {
	ID, Method, Path, Host string
	Headers                map[string]string
	Time                   string
}
type Grant struct {
	ID      string
	Scopes  []string
	Servers []string
}
type Decision struct {
	Allow    bool
	Reason   string
	Revision string
}
