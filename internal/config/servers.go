package config

import (
	"fmt"
	"net/url"
	"regexp"
)

// Server declares an MCP server in the config file.
type Server struct {
	Name        string            `json:"name"`
	URL         string            `json:"url"`
	Credential  string            `json:"credential,omitempty"`
	Scopes      []string          `json:"scopes,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Description string            `json:"description,omitempty"`
}

// ServerNamePattern is what a server name may look like: it becomes a URL
// path segment and part of Envoy cluster names.
var ServerNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func (s Server) validate() []error {
	var errs []error
	if !ServerNamePattern.MatchString(s.Name) {
		errs = append(errs, fmt.Errorf("name %q: must be lowercase letters, digits and dashes", s.Name))
	}
	if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("url %q: must be an absolute http(s) URL", s.URL))
	}
	return errs
}
