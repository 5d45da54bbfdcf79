package config

import (
	"fmt"

	"github.com/warden-mcp/warden/internal/serverspec"
)

// Server declares an MCP server in the config file.
type Server struct {
	Name       string   `json:"name"`
	URL        string   `json:"url"`
	Credential string   `json:"credential,omitempty"`
	Scopes     []string `json:"scopes,omitempty"`
	// StepUpScopes are scopes the server's policy may challenge a call
	// for (registry.Spec.StepUpScopes).
	StepUpScopes []string          `json:"step_up_scopes,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Description  string            `json:"description,omitempty"`
	// IdPAudience and IdPScopes (exchange), Provider and Unconnected
	// (provider): registry.Spec's fields of the same names.
	IdPAudience string   `json:"idp_audience,omitempty"`
	IdPScopes   []string `json:"idp_scopes,omitempty"`
	Provider    string   `json:"provider,omitempty"`
	Unconnected string   `json:"unconnected,omitempty"`
	// Pinning ("warn", the default, or "block") and PinNewTools
	// ("approve", the default, or "wait") set tool pinning.
	Pinning     string `json:"pinning,omitempty"`
	PinNewTools string `json:"pin_new_tools,omitempty"`
}

// ServerNamePattern is serverspec.NamePattern, kept here for the callers
// that still name it through the config package; new code uses
// serverspec.ValidName.
var ServerNamePattern = serverspec.NamePattern

// validate checks what the file alone can tell; the registry checks the
// rest (credential mode, scopes) when the server is reconciled. Both use
// package serverspec for the name and URL.
func (s Server) validate() []error {
	var errs []error
	if err := serverspec.CheckName(s.Name); err != nil {
		errs = append(errs, err)
	}
	if err := serverspec.CheckURL(s.URL); err != nil {
		errs = append(errs, fmt.Errorf("url %q: %w", serverspec.Redact(s.URL), err))
	}
	return errs
}
