package oauth

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	tokens        *prometheus.CounterVec
	registrations *prometheus.CounterVec
	logins        *prometheus.CounterVec
	revocations   *prometheus.CounterVec
	rateLimited   *prometheus.CounterVec
	// idpRevocations counts RFC 7009 revocations at the IdP (idprevoke.go).
	idpRevocations *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warden", Subsystem: "oauth", Name: "token_requests_total",
			Help: "Token endpoint requests by grant type and result (issued or the OAuth error code).",
		}, []string{"grant_type", "result"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warden", Subsystem: "oauth", Name: "client_registrations_total",
			Help: "Client registrations by source (dcr, cimd) and result.",
		}, []string{"source", "result"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warden", Subsystem: "oauth", Name: "logins_total",
			Help: "User sign-ins at the connector by result.",
		}, []string{"result"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warden", Subsystem: "oauth", Name: "grant_revocations_total",
			Help: "Grants revoked by the authorization server, by reason.",
		}, []string{"reason"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warden", Subsystem: "oauth", Name: "rate_limited_total",
			Help: "Requests refused by a per-source rate limit, by endpoint.",
		}, []string{"endpoint"}),
		idpRevocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "warden", Subsystem: "oauth", Name: "idp_token_revocations_total",
			Help: "IdP refresh tokens of revoked grants revoked at the IdP (RFC 7009), by result: revoked, retry, failed, unsupported.",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.tokens, m.registrations, m.logins, m.revocations, m.rateLimited, m.idpRevocations)
	}
	return m
}
