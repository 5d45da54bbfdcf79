package registry

import (
	"slices"
	"strings"

	"github.com/warden-mcp/warden/internal/serverspec"
	"github.com/warden-mcp/warden/internal/store"
)

// buildUpstream validates the settings of the idp, exchange and provider
// credential modes and copies them into s; they are cleared for the other
// modes.
func (r *Registry) buildUpstream(spec Spec, mode store.CredentialMode, s *store.Server, bad func(string, ...any)) {
	s.IdPAudience, s.IdPScopes, s.Provider, s.Unconnected = "", nil, "", ""
	for _, sc := range spec.IdPScopes {
		if sc == "" || strings.ContainsAny(sc, " \"\\") {
			bad("idp scope %q: must be a non-empty token without spaces or quotes", sc)
		}
	}
	switch mode {
	case store.CredentialIdP, store.CredentialExchange:
		if spec.Provider != "" || spec.Unconnected != "" {
			bad("provider and unconnected: only valid with the provider credential")
		}
		if mode == store.CredentialExchange && spec.IdPAudience == "" && len(spec.IdPScopes) == 0 {
			bad("idp_audience or idp_scopes: the exchange credential needs what to exchange the user's token for")
		}
		// idp without audience and scopes attaches the sign-in token as it
		// is; with them Warden refreshes for that resource and scopes.
		if strings.ContainsAny(spec.IdPAudience, " \"\\") {
			bad("idp_audience: must not hold spaces or quotes")
		}
		s.IdPAudience, s.IdPScopes = spec.IdPAudience, slices.Clone(spec.IdPScopes)
	case store.CredentialProvider:
		if spec.IdPAudience != "" || len(spec.IdPScopes) > 0 {
			bad("idp_audience and idp_scopes: only valid with the idp and exchange credentials")
		}
		if spec.Provider == "" {
			bad("provider: required for the provider credential")
		} else if err := serverspec.CheckName(spec.Provider); err != nil {
			bad("provider: %v", err)
		}
		switch spec.Unconnected {
		case store.UnconnectedElicit, "elicit", store.UnconnectedElicitAll, store.UnconnectedPass:
		default:
			bad("unconnected %q: must be elicit, elicit_all or pass", spec.Unconnected)
		}
		s.Provider = spec.Provider
		if spec.Unconnected != "elicit" {
			s.Unconnected = spec.Unconnected
		}
	default:
		if spec.IdPAudience != "" || len(spec.IdPScopes) > 0 || spec.Provider != "" || spec.Unconnected != "" {
			bad("idp_audience, idp_scopes, provider and unconnected: only valid with the idp, exchange and provider credentials")
		}
	}
}
