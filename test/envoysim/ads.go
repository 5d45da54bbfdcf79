package envoysim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// subscription is the state-of-the-world bookkeeping of one resource type
// on the ADS stream.
type subscription struct {
	typeURL string
	names   []string // nil: wildcard (LDS, CDS)
	version string   // last accepted version_info
	nonce   string   // nonce of the last response, accepted or not
	sent    bool
}

// runADS keeps one ADS stream open, reconnecting with backoff like Envoy.
func (p *Proxy) runADS(ctx context.Context) {
	subs := map[string]*subscription{
		ClusterType:  {typeURL: ClusterType},
		ListenerType: {typeURL: ListenerType},
		RouteType:    {typeURL: RouteType},
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := p.adsStream(ctx, subs)
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("envoysim: ADS stream ended, reconnecting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (p *Proxy) node() *corev3.Node {
	return &corev3.Node{
		Id:            p.opts.NodeID,
		Cluster:       p.opts.NodeCluster,
		UserAgentName: "envoy",
	}
}

func (p *Proxy) adsStream(ctx context.Context, subs map[string]*subscription) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(p.adsConn).StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("open ADS stream: %w", err)
	}
	send := func(s *subscription, errDetail *statuspb.Status) error {
		s.sent = true
		req := &discoveryv3.DiscoveryRequest{
			VersionInfo:   s.version,
			Node:          p.node(),
			ResourceNames: s.names,
			TypeUrl:       s.typeURL,
			ResponseNonce: s.nonce,
			ErrorDetail:   errDetail,
		}
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("send %s request: %w", s.typeURL, err)
		}
		return nil
	}
	// A new stream starts from the last accepted versions without nonces.
	for _, s := range subs {
		s.nonce, s.sent = "", false
	}
	reconnect := subs[ClusterType].version != ""
	// Envoy asks for clusters first and for listeners once the first CDS
	// response was handled (cluster warming); on a reconnect it re-sends
	// every subscription at once.
	if err := send(subs[ClusterType], nil); err != nil {
		return err
	}
	if reconnect {
		if err := send(subs[ListenerType], nil); err != nil {
			return err
		}
		if len(subs[RouteType].names) > 0 {
			if err := send(subs[RouteType], nil); err != nil {
				return err
			}
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		s, ok := subs[resp.GetTypeUrl()]
		if !ok {
			p.log.Warn("envoysim: ignoring a response of an unsubscribed type", "type", resp.GetTypeUrl())
			continue
		}
		s.nonce = resp.GetNonce()
		rec := XDSResponse{TypeURL: resp.GetTypeUrl(), Version: resp.GetVersionInfo(), Nonce: resp.GetNonce()}
		next, applyErr := p.apply(resp, &rec)
		var detail *statuspb.Status
		if applyErr != nil {
			// NACK: keep the last good version and report why.
			rec.Error = applyErr.Error()
			detail = &statuspb.Status{Code: int32(codes.Internal), Message: rec.Error}
			p.log.Warn("envoysim: NACK", "type", rec.TypeURL, "version", rec.Version, "err", applyErr)
		} else {
			s.version = resp.GetVersionInfo()
			p.log.Debug("envoysim: ACK", "type", rec.TypeURL, "version", rec.Version, "resources", rec.Resources)
		}
		if err := send(s, detail); err != nil {
			return err
		}
		// Record the ACK before serving the new configuration, so that a
		// test that saw the routes change also sees the ACK.
		p.record(rec)
		if next != nil {
			p.publish(next)
		}

		if s.typeURL == ClusterType && !subs[ListenerType].sent {
			if err := send(subs[ListenerType], nil); err != nil {
				return err
			}
		}
		if s.typeURL == ListenerType && applyErr == nil {
			names := p.state.Load().rdsNames()
			rs := subs[RouteType]
			if len(names) > 0 && (!slices.Equal(names, rs.names) || !rs.sent) {
				rs.names = names
				if err := send(rs, nil); err != nil {
					return err
				}
			}
		}
	}
}

// apply compiles a response and, when every resource in it is usable,
// returns the state to publish. Any error rejects the whole response and
// keeps the last good configuration.
func (p *Proxy) apply(resp *discoveryv3.DiscoveryResponse, rec *XDSResponse) (*state, error) {
	cur := p.state.Load()
	next := cur.clone()
	var errs []string
	seen := map[string]bool{}
	dup := func(name string) bool {
		if seen[name] {
			errs = append(errs, fmt.Sprintf("duplicate resource %q", name))
			return true
		}
		seen[name] = true
		return false
	}

	switch resp.GetTypeUrl() {
	case ClusterType:
		clusters := map[string]*cluster{}
		for _, a := range resp.GetResources() {
			c := &clusterv3.Cluster{}
			if err := a.UnmarshalTo(c); err != nil {
				errs = append(errs, err.Error())
				continue
			}
			rec.Resources = append(rec.Resources, c.GetName())
			if dup(c.GetName()) {
				continue
			}
			if _, ok := p.static.clusters[c.GetName()]; ok {
				p.log.Warn("envoysim: CDS cannot update a static cluster; skipped", "cluster", c.GetName())
				continue
			}
			if old := cur.clusters[c.GetName()]; old != nil && proto.Equal(old.src, c) {
				clusters[c.GetName()] = old // unchanged: keep its connection pool
				continue
			}
			cc, err := compileCluster(c, p.opts.TLSRootCAs)
			if err != nil {
				errs = append(errs, fmt.Sprintf("Error adding/updating cluster(s) %s: %v", c.GetName(), err))
				continue
			}
			clusters[c.GetName()] = cc
		}
		if len(errs) > 0 {
			for _, c := range clusters {
				if cur.clusters[c.name] != c {
					c.close()
				}
			}
			return nil, errors.New(strings.Join(errs, "; "))
		}
		for name, c := range p.static.clusters {
			clusters[name] = c
		}
		for name, old := range cur.clusters {
			if clusters[name] != old {
				p.retire(old)
			}
		}
		next.clusters = clusters

	case ListenerType:
		listeners := map[string]*listener{}
		for _, a := range resp.GetResources() {
			l := &listenerv3.Listener{}
			if err := a.UnmarshalTo(l); err != nil {
				errs = append(errs, err.Error())
				continue
			}
			rec.Resources = append(rec.Resources, l.GetName())
			if dup(l.GetName()) {
				continue
			}
			if _, ok := p.static.listeners[l.GetName()]; ok {
				errs = append(errs, fmt.Sprintf("Error adding/updating listener(s) %s: cannot update a static listener", l.GetName()))
				continue
			}
			cl, err := compileListener(l)
			if err != nil {
				errs = append(errs, fmt.Sprintf("Error adding/updating listener(s) %s: %v", l.GetName(), err))
				continue
			}
			listeners[l.GetName()] = cl
		}
		if len(errs) > 0 {
			return nil, errors.New(strings.Join(errs, "; "))
		}
		for name, l := range p.static.listeners {
			listeners[name] = l
		}
		next.listeners = listeners

	case RouteType:
		for _, a := range resp.GetResources() {
			rc := &routev3.RouteConfiguration{}
			if err := a.UnmarshalTo(rc); err != nil {
				errs = append(errs, err.Error())
				continue
			}
			rec.Resources = append(rec.Resources, rc.GetName())
			if dup(rc.GetName()) {
				continue
			}
			rt, err := compileRouteConfig(rc)
			if err != nil {
				errs = append(errs, fmt.Sprintf("route configuration %s: %v", rc.GetName(), err))
				continue
			}
			next.routes[rc.GetName()] = rt
		}
		if len(errs) > 0 {
			return nil, errors.New(strings.Join(errs, "; "))
		}
	}
	next.versions[resp.GetTypeUrl()] = resp.GetVersionInfo()
	next.activate(p.opts.ListenerName)
	return next, nil
}
