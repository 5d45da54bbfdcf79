package envoysim

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Type URLs of the typed configs the harness understands. Envoy selects an
// extension by the type URL of its typed_config, not by its name.
var (
	hcmTypeURL           = typeURLOf(&hcmv3.HttpConnectionManager{})
	extAuthzTypeURL      = typeURLOf(&extauthzv3.ExtAuthz{})
	extAuthzRouteTypeURL = typeURLOf(&extauthzv3.ExtAuthzPerRoute{})
	extProcTypeURL       = typeURLOf(&extprocv3.ExternalProcessor{})
	extProcRouteTypeURL  = typeURLOf(&extprocv3.ExtProcPerRoute{})
	routerTypeURL        = typeURLOf(&routerv3.Router{})
	filterConfigTypeURL  = typeURLOf(&routev3.FilterConfig{})
)

func typeURLOf(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

// validator is implemented by every generated Envoy message (protoc-gen-validate).
type validator interface {
	ValidateAll() error
}

// validate runs the proto constraint checks Envoy runs on every resource
// before accepting it.
func validate(m proto.Message) error {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	return nil
}

// unpack decodes an Any into dst and validates it.
func unpack(a *anypb.Any, dst proto.Message) error {
	if err := a.UnmarshalTo(dst); err != nil {
		return fmt.Errorf("unpack %s: %w", a.GetTypeUrl(), err)
	}
	if err := validate(dst); err != nil {
		return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
	}
	return nil
}

// durationOr returns d, or def when the field is unset (0 stays 0: Envoy
// reads an explicit zero as "disabled").
func durationOr(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration()
}

// listener is a compiled Listener: the harness serves the HTTP connection
// manager of its first filter chain on its own socket.
type listener struct {
	name string
	hcm  *connManager
}

// connManager holds the HttpConnectionManager settings the harness follows.
type connManager struct {
	rdsName string      // route config name from RDS, or
	inline  *routeTable // an inline route_config

	filters []*httpFilter

	useRemoteAddress          bool
	xffTrustedHops            uint32
	skipXFFAppend             bool
	generateRequestID         bool
	preserveExternalRequestID bool
	alwaysSetRequestID        bool
	streamIdleTimeout         time.Duration
	maxStreamDuration         time.Duration // common_http_protocol_options.max_stream_duration; 0: none
	serverName                string
	serverTransform           hcmv3.HttpConnectionManager_ServerHeaderTransformation
	stripAnyHostPort          bool
	normalizePath             bool
	mergeSlashes              bool
	escapedSlashes            hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction
	internalCIDRs             []*net.IPNet
	suppressEnvoyHeaders      bool // from the router filter
}

// isInternal reports whether an address is in internal_address_config.
// Since Envoy 1.33 no address is internal unless configured.
func (cm *connManager) isInternal(addr string) bool {
	ip := net.ParseIP(addr)
	for _, n := range cm.internalCIDRs {
		if ip != nil && n.Contains(ip) {
			return true
		}
	}
	return false
}

// httpFilter is one entry of http_filters: ext_authz or the router.
type httpFilter struct {
	name     string
	disabled bool
	authz    *extAuthz
	proc     *extProc
	router   bool
}

// extAuthz is the compiled ExtAuthz filter configuration.
type extAuthz struct {
	clusterName     string
	authority       string
	initialMetadata []header
	timeout         time.Duration

	withBody     bool
	maxBytes     uint32
	allowPartial bool
	packAsBytes  bool

	failureModeAllow          bool
	failureModeAllowHeaderAdd bool
	statusOnError             int
	clearRouteCache           bool
	validateMutations         bool
	encodeRawHeaders          bool
	maxDeniedBodyBytes        uint32
	allowedHeaders            listMatcher
	disallowedHeaders         listMatcher
}

// defaultAuthzTimeout is Envoy's DefaultTimeout for the ext_authz gRPC call
// when grpc_service.timeout is unset (ext_authz/config.h).
const defaultAuthzTimeout = 200 * time.Millisecond

// defaultStreamIdleTimeout is HttpConnectionManager.stream_idle_timeout's
// documented default.
const defaultStreamIdleTimeout = 5 * time.Minute

// defaultRouteTimeout is RouteAction.timeout's documented default.
const defaultRouteTimeout = 15 * time.Second

func compileListener(l *listenerv3.Listener) (*listener, error) {
	if err := validate(l); err != nil {
		return nil, err
	}
	chains := l.GetFilterChains()
	if len(chains) == 0 && l.GetDefaultFilterChain() != nil {
		chains = []*listenerv3.FilterChain{l.GetDefaultFilterChain()}
	}
	if len(chains) == 0 {
		return nil, errors.New("no filter chain")
	}
	// Filter chain matching (SNI, ALPN, source ranges) is not modelled: the
	// harness serves plain HTTP/1.1 and takes the first chain.
	filters := chains[0].GetFilters()
	if len(filters) == 0 {
		return nil, errors.New("no http_connection_manager in the first filter chain")
	}
	for _, f := range filters {
		if tc := f.GetTypedConfig(); tc.GetTypeUrl() != hcmTypeURL {
			return nil, fmt.Errorf("network filter %q (%s) is not supported by envoysim", f.GetName(), tc.GetTypeUrl())
		}
	}
	hcmAny := filters[0].GetTypedConfig()
	hcm := &hcmv3.HttpConnectionManager{}
	if err := unpack(hcmAny, hcm); err != nil {
		return nil, err
	}
	cm, err := compileConnManager(hcm)
	if err != nil {
		return nil, fmt.Errorf("http_connection_manager: %w", err)
	}
	return &listener{name: l.GetName(), hcm: cm}, nil
}

func compileConnManager(h *hcmv3.HttpConnectionManager) (*connManager, error) {
	cm := &connManager{
		useRemoteAddress:          h.GetUseRemoteAddress().GetValue(),
		xffTrustedHops:            h.GetXffNumTrustedHops(),
		skipXFFAppend:             h.GetSkipXffAppend(),
		generateRequestID:         h.GetGenerateRequestId() == nil || h.GetGenerateRequestId().GetValue(),
		preserveExternalRequestID: h.GetPreserveExternalRequestId(),
		alwaysSetRequestID:        h.GetAlwaysSetRequestIdInResponse(),
		streamIdleTimeout:         durationOr(h.GetStreamIdleTimeout(), defaultStreamIdleTimeout),
		maxStreamDuration:         h.GetCommonHttpProtocolOptions().GetMaxStreamDuration().AsDuration(),
		serverName:                h.GetServerName(),
		serverTransform:           h.GetServerHeaderTransformation(),
		stripAnyHostPort:          h.GetStripAnyHostPort(),
		normalizePath:             h.GetNormalizePath().GetValue(),
		mergeSlashes:              h.GetMergeSlashes(),
		escapedSlashes:            h.GetPathWithEscapedSlashesAction(),
	}
	for _, c := range h.GetInternalAddressConfig().GetCidrRanges() {
		_, n, err := net.ParseCIDR(fmt.Sprintf("%s/%d", c.GetAddressPrefix(), c.GetPrefixLen().GetValue()))
		if err != nil {
			return nil, fmt.Errorf("internal_address_config: %w", err)
		}
		cm.internalCIDRs = append(cm.internalCIDRs, n)
	}
	if h.GetCodecType() == hcmv3.HttpConnectionManager_HTTP2 || h.GetCodecType() == hcmv3.HttpConnectionManager_HTTP3 {
		return nil, fmt.Errorf("codec_type %s is not supported by envoysim (it serves HTTP/1.1)", h.GetCodecType())
	}
	if cm.serverName == "" {
		cm.serverName = "envoy"
	}
	switch rs := h.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		src := rs.Rds.GetConfigSource()
		if src.GetAds() == nil {
			return nil, fmt.Errorf("rds %q: only config_source ads is supported by envoysim", rs.Rds.GetRouteConfigName())
		}
		if v := src.GetResourceApiVersion(); v != corev3.ApiVersion_V3 {
			return nil, fmt.Errorf("rds %q: resource_api_version %s is not V3", rs.Rds.GetRouteConfigName(), v)
		}
		cm.rdsName = rs.Rds.GetRouteConfigName()
	case *hcmv3.HttpConnectionManager_RouteConfig:
		rt, err := compileRouteConfig(rs.RouteConfig)
		if err != nil {
			return nil, fmt.Errorf("route_config: %w", err)
		}
		cm.inline = rt
	default:
		return nil, fmt.Errorf("route specifier %T is not supported by envoysim", rs)
	}

	names := map[string]bool{}
	for i, f := range h.GetHttpFilters() {
		if names[f.GetName()] {
			return nil, fmt.Errorf("http filter name %q is repeated", f.GetName())
		}
		names[f.GetName()] = true
		hf, err := compileHTTPFilter(f)
		if err != nil {
			return nil, err
		}
		if hf == nil {
			continue // optional filter this harness does not know: skipped, as Envoy does
		}
		if hf.router {
			if i != len(h.GetHttpFilters())-1 {
				return nil, fmt.Errorf("http filter %q: the router must be the last filter", f.GetName())
			}
			r := &routerv3.Router{}
			if err := unpack(f.GetTypedConfig(), r); err != nil {
				return nil, err
			}
			cm.suppressEnvoyHeaders = r.GetSuppressEnvoyHeaders()
		}
		cm.filters = append(cm.filters, hf)
	}
	if len(cm.filters) == 0 || !cm.filters[len(cm.filters)-1].router {
		return nil, errors.New("the last http filter must be the terminal router filter")
	}
	return cm, nil
}

// compileHTTPFilter returns nil for an unknown optional filter.
func compileHTTPFilter(f *hcmv3.HttpFilter) (*httpFilter, error) {
	tc := f.GetTypedConfig()
	if tc == nil {
		return nil, fmt.Errorf("http filter %q: typed_config is required by envoysim", f.GetName())
	}
	hf := &httpFilter{name: f.GetName(), disabled: f.GetDisabled()}
	switch tc.GetTypeUrl() {
	case routerTypeURL:
		hf.router = true
	case extAuthzTypeURL:
		ea := &extauthzv3.ExtAuthz{}
		if err := unpack(tc, ea); err != nil {
			return nil, fmt.Errorf("http filter %q: %w", f.GetName(), err)
		}
		c, err := compileExtAuthz(ea)
		if err != nil {
			return nil, fmt.Errorf("http filter %q: %w", f.GetName(), err)
		}
		hf.authz = c
	case extProcTypeURL:
		ep := &extprocv3.ExternalProcessor{}
		if err := unpack(tc, ep); err != nil {
			return nil, fmt.Errorf("http filter %q: %w", f.GetName(), err)
		}
		c, err := compileExtProc(ep)
		if err != nil {
			return nil, fmt.Errorf("http filter %q: %w", f.GetName(), err)
		}
		hf.proc = c
	default:
		if f.GetIsOptional() {
			return nil, nil
		}
		// Envoy's wording for an extension it has no factory for.
		//lint:ignore ST1005 Envoy's own error text
		return nil, fmt.Errorf("Didn't find a registered implementation for '%s' with type URL: '%s'",
			f.GetName(), strings.TrimPrefix(tc.GetTypeUrl(), "type.googleapis.com/"))
	}
	return hf, nil
}

func compileExtAuthz(ea *extauthzv3.ExtAuthz) (*extAuthz, error) {
	// ext_authz/config.cc rejects anything but the V3 transport.
	if ea.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		return nil, fmt.Errorf("transport_api_version %s is not supported, use V3", ea.GetTransportApiVersion())
	}
	gs := ea.GetGrpcService()
	if gs == nil {
		return nil, errors.New("only grpc_service is supported by envoysim (http_service is not)")
	}
	eg := gs.GetEnvoyGrpc()
	if eg == nil {
		return nil, errors.New("grpc_service: only envoy_grpc is supported by envoysim")
	}
	if ea.GetDecoderHeaderMutationRules() != nil {
		return nil, errors.New("decoder_header_mutation_rules is not supported by envoysim")
	}
	if ea.GetFilterEnabledMetadata() != nil {
		return nil, errors.New("filter_enabled_metadata is not supported by envoysim")
	}
	if fe := ea.GetFilterEnabled(); fe != nil {
		dv := fe.GetDefaultValue()
		if dv.GetNumerator() != 100 || dv.GetDenominator() != typev3.FractionalPercent_HUNDRED {
			return nil, errors.New("filter_enabled other than 100% is not supported by envoysim")
		}
	}
	if ea.GetShadowMode() {
		return nil, errors.New("shadow_mode is not supported by envoysim")
	}
	c := &extAuthz{
		clusterName:               eg.GetClusterName(),
		authority:                 eg.GetAuthority(),
		timeout:                   durationOr(gs.GetTimeout(), defaultAuthzTimeout),
		failureModeAllow:          ea.GetFailureModeAllow(),
		failureModeAllowHeaderAdd: ea.GetFailureModeAllowHeaderAdd(),
		statusOnError:             http.StatusForbidden,
		clearRouteCache:           ea.GetClearRouteCache(),
		validateMutations:         ea.GetValidateMutations(),
		encodeRawHeaders:          ea.GetEncodeRawHeaders(),
		maxDeniedBodyBytes:        ea.GetMaxDeniedResponseBodyBytes(),
	}
	for _, md := range gs.GetInitialMetadata() {
		c.initialMetadata = append(c.initialMetadata, header{key: strings.ToLower(md.GetKey()), value: md.GetValue()})
	}
	if s := ea.GetStatusOnError(); s != nil {
		c.statusOnError = toErrorCode(int(s.GetCode()))
	}
	if b := ea.GetWithRequestBody(); b != nil {
		c.withBody = true
		c.maxBytes = b.GetMaxRequestBytes()
		c.allowPartial = b.GetAllowPartialMessage()
		c.packAsBytes = b.GetPackAsBytes()
	}
	var err error
	if c.allowedHeaders, err = compileListMatcher(ea.GetAllowedHeaders()); err != nil {
		return nil, fmt.Errorf("allowed_headers: %w", err)
	}
	if c.disallowedHeaders, err = compileListMatcher(ea.GetDisallowedHeaders()); err != nil {
		return nil, fmt.Errorf("disallowed_headers: %w", err)
	}
	return c, nil
}

// toErrorCode mirrors ext_authz's FilterConfig::toErrorCode: a value
// outside Envoy's HTTP code range falls back to 403.
func toErrorCode(code int) int {
	if code >= 100 && code <= 511 {
		return code
	}
	return http.StatusForbidden
}

// perFilter is one typed_per_filter_config entry, keyed in the route table
// by the HTTP filter name it applies to.
type perFilter struct {
	disabled *bool // from FilterConfig.disabled, ExtAuthzPerRoute.disabled or ExtProcPerRoute.disabled
	authz    *extauthzv3.CheckSettings
	proc     *extprocv3.ExtProcOverrides
}

func compilePerFilter(m map[string]*anypb.Any) (map[string]*perFilter, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]*perFilter, len(m))
	for name, a := range m {
		pf, err := compileOnePerFilter(a)
		if err != nil {
			return nil, fmt.Errorf("typed_per_filter_config[%q]: %w", name, err)
		}
		if pf != nil {
			out[name] = pf
		}
	}
	return out, nil
}

func compileOnePerFilter(a *anypb.Any) (*perFilter, error) {
	pf := &perFilter{}
	if a.GetTypeUrl() == filterConfigTypeURL {
		fc := &routev3.FilterConfig{}
		if err := unpack(a, fc); err != nil {
			return nil, err
		}
		if fc.GetDisabled() {
			t := true
			pf.disabled = &t
		}
		if fc.GetConfig() == nil {
			if !fc.GetDisabled() {
				f := false
				pf.disabled = &f // an empty FilterConfig enables a filter disabled by default
			}
			return pf, nil
		}
		if u := fc.GetConfig().GetTypeUrl(); u != extAuthzRouteTypeURL && u != extProcRouteTypeURL {
			if fc.GetIsOptional() {
				return nil, nil
			}
			//lint:ignore ST1005 Envoy's own error text
			return nil, fmt.Errorf("Didn't find a registered implementation for type URL: '%s'", fc.GetConfig().GetTypeUrl())
		}
		a = fc.GetConfig()
	}
	switch a.GetTypeUrl() {
	case extAuthzRouteTypeURL:
		pr := &extauthzv3.ExtAuthzPerRoute{}
		if err := unpack(a, pr); err != nil {
			return nil, err
		}
		switch o := pr.GetOverride().(type) {
		case *extauthzv3.ExtAuthzPerRoute_Disabled:
			d := o.Disabled
			pf.disabled = &d
		case *extauthzv3.ExtAuthzPerRoute_CheckSettings:
			cs := o.CheckSettings
			if cs.GetServiceOverride() != nil {
				return nil, errors.New("check_settings service override is not supported by envoysim")
			}
			pf.authz = cs
		}
		return pf, nil
	case extProcRouteTypeURL:
		pr := &extprocv3.ExtProcPerRoute{}
		if err := unpack(a, pr); err != nil {
			return nil, err
		}
		switch o := pr.GetOverride().(type) {
		case *extprocv3.ExtProcPerRoute_Disabled:
			d := o.Disabled
			pf.disabled = &d
		case *extprocv3.ExtProcPerRoute_Overrides:
			if err := checkProcOverrides(o.Overrides); err != nil {
				return nil, err
			}
			pf.proc = o.Overrides
		}
		return pf, nil
	case routerTypeURL:
		return pf, nil
	}
	//lint:ignore ST1005 Envoy's own error text
	return nil, fmt.Errorf("Didn't find a registered implementation for type URL: '%s'", a.GetTypeUrl())
}

// headerMutations are the request_headers_to_add/remove or
// response_headers_to_add/remove of one level of a route table.
type headerMutations struct {
	add    []*corev3.HeaderValueOption
	remove []string
}

var formatterRE = regexp.MustCompile(`%[A-Z_]+(\(.*?\))?(:[0-9]+)?%`)

func compileHeaderMutations(add []*corev3.HeaderValueOption, remove []string) (headerMutations, error) {
	for _, h := range add {
		v := h.GetHeader().GetValue()
		if formatterRE.MatchString(v) {
			return headerMutations{}, fmt.Errorf("header %q: value %q uses a substitution formatter, which envoysim does not evaluate", h.GetHeader().GetKey(), v)
		}
	}
	lower := make([]string, len(remove))
	for i, r := range remove {
		lower[i] = strings.ToLower(r)
	}
	return headerMutations{add: add, remove: lower}, nil
}

// apply follows HeaderParser::evaluateHeaders: removals first, then
// overwrites, then additions; append_action as documented in base.proto,
// the deprecated append (default true outside ext_authz) when set.
func (m headerMutations) apply(h *headerMap) {
	for _, k := range m.remove {
		if strings.HasPrefix(k, ":") || k == "host" {
			continue
		}
		h.remove(k)
	}
	var adds []header
	for _, o := range m.add {
		k := strings.ToLower(o.GetHeader().GetKey())
		v := o.GetHeader().GetValue()
		if v == "" && !o.GetKeepEmptyValue() {
			continue
		}
		action := o.GetAppendAction()
		//lint:ignore SA1019 Envoy still honours the deprecated append when set
		if o.GetAppend() != nil {
			action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
			//lint:ignore SA1019 see above
			if o.GetAppend().GetValue() {
				action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
			}
		}
		switch action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			adds = append(adds, header{k, v})
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !h.has(k) {
				adds = append(adds, header{k, v})
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if h.has(k) {
				h.set(k, v)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h.set(k, v)
		}
	}
	for _, a := range adds {
		h.add(a.key, a.value)
	}
}
