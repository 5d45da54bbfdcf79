package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/warden-mcp/warden/authz"
	"github.com/warden-mcp/warden/internal/admin"
	"github.com/warden-mcp/warden/internal/audit"
	"github.com/warden-mcp/warden/internal/config"
	"github.com/warden-mcp/warden/internal/grant"
	"github.com/warden-mcp/warden/internal/keys"
	"github.com/warden-mcp/warden/internal/registry"
	"github.com/warden-mcp/warden/internal/seal"
	"github.com/warden-mcp/warden/internal/store"
	"github.com/warden-mcp/warden/internal/tracing"
	"github.com/warden-mcp/warden/internal/upstream"
	"github.com/warden-mcp/warden/internal/usage"
	"github.com/warden-mcp/warden/oauth"
	"github.com/warden-mcp/warden/policy"
	"github.com/warden-mcp/warden/policy/replay"
	"github.com/warden-mcp/warden/xds"
)

func newServeCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run Warden: ext_authz gRPC, OAuth HTTP, xDS and the admin API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg, cfgPath, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", config.PathFromEnv(), "YAML config file (env "+config.PathEnv+"); defaults apply without one")
	return cmd
}

func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// auditSink opens where audit JSON lines go.
func auditSink(spec string, stdout io.Writer) (io.Writer, func() error, error) {
	switch spec {
	case "stdout":
		return stdout, func() error { return nil }, nil
	case "stderr":
		return os.Stderr, func() error { return nil }, nil
	case "none":
		return nil, func() error { return nil }, nil
	}
	f, err := os.OpenFile(spec, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open audit sink: %w", err)
	}
	return f, f.Close, nil
}

// drainTimeout bounds graceful shutdown: in-flight checks finish, queued
// audit events are written.
const drainTimeout = 15 * time.Second

// serve runs Warden until ctx ends. cfgPath, when set, is watched: changes
// to its servers section are reconciled live.
func serve(ctx context.Context, cfg config.Config, cfgPath string, stdout, stderr io.Writer) error {
	log := newLogger(cfg.Log, stderr)
	// config.Runtime explains the defaults; GOGC and GOMEMLIMIT in the
	// environment are already folded in.
	debug.SetGCPercent(cfg.Runtime.GCPercent)
	if limit, _ := config.ParseBytes(cfg.Runtime.MemoryLimit); limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	st, err := openServeStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()

	ring, ringFromEnv, err := loadKeyring(cfg, log)
	if err != nil {
		return err
	}
	signer, created, err := keys.LoadOrCreate(cfg.Keys.SigningFile)
	if err != nil {
		return err
	}
	if created {
		log.Info("generated signing key", "file", cfg.Keys.SigningFile, "kid", signer.KeyID())
	}
	// On PostgreSQL the keys every replica uses live in the store.
	shared, err := shareKeys(ctx, st, ring, signer, log)
	if err != nil {
		return err
	}
	if shared != nil {
		ring, signer = shared.ring.Keyring, shared.signer
	}
	adminToken, created, err := admin.LoadOrCreateToken(cfg.Keys.AdminTokenFile)
	if err != nil {
		return err
	}
	if cfg.Keys.AdminToken != "" {
		adminToken = cfg.Keys.AdminToken
	} else if created {
		log.Info("generated admin token", "file", cfg.Keys.AdminTokenFile)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	auditErrors := prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_audit_write_errors_total", Help: "Failed audit store writes (retried until they succeed)."})
	reg.MustRegister(auditErrors)
	if err := registerReplicaMetrics(st, reg); err != nil {
		return err
	}

	sink, closeSink, err := auditSink(cfg.Audit.Sink, stdout)
	if err != nil {
		return err
	}
	defer closeSink()
	sink, closeSinks, err := auditSinks(cfg.Audit, sink, log, reg)
	if err != nil {
		return err
	}
	trail, err := audit.Open(ctx, st, auditOptions(cfg.Audit, sink, log, reg, func(error) { auditErrors.Inc() }))
	if err != nil {
		return err
	}

	grants, err := grant.New(grant.Options{Store: st, Audit: trail, Registerer: reg,
		AccessTTL: cfg.OAuth.AccessTokenTTL.D(), RefreshTTL: cfg.OAuth.RefreshTokenTTL.D(), CodeTTL: cfg.OAuth.CodeTTL.D()})
	if err != nil {
		return err
	}
	providers := upstream.NewProviders(st, ring, trail, nil, func(ctx context.Context, actor, name string) error {
		_, err := grants.RevokeAccounts(ctx, actor, grant.AccountTarget{Provider: name}, grant.ReasonProviderRemoved)
		return err
	})
	if err := providers.Reconcile(ctx, providerSpecs(cfg.Providers)); err != nil {
		log.Error("config providers not fully applied", "err", err)
	}
	late := &lateOAuth{}
	brokerOpts := brokerOptions(cfg, log)
	brokerOpts.Store, brokerOpts.Keyring, brokerOpts.Audit, brokerOpts.IdP, brokerOpts.Revoker = st, ring, trail, late, accountRevoker{grants}
	if cfg.Credentials.Exchange.ActorToken {
		brokerOpts.Exchange.Actor = actorTokens(signer, cfg.Issuer())
	}
	broker, err := upstream.New(brokerOpts)
	if err != nil {
		return err
	}
	servers := registry.New(st, trail, ring, nil)
	// Removing a server revokes its grants like revoke --server.
	servers.OnRemove(func(ctx context.Context, actor, name string) error {
		_, err := grants.Revoke(ctx, actor, grant.Target{Server: name}, grant.ReasonServerRemoved)
		return err
	})
	if err := servers.Reconcile(ctx, serverSpecs(cfg.Servers)); err != nil {
		log.Error("config servers not fully applied", "err", err)
	}
	catalog := authz.NewCatalog(servers)
	servers.OnChange(catalog.Invalidate)

	engine, err := policy.New(policy.Options{Dir: cfg.Policy.Dir, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}

	attacher, err := authz.NewAttacher(authz.AttacherOptions{
		Signer: signer, Opener: ring, Issuer: cfg.Issuer(), ResourceURL: cfg.ResourceURL, TTL: cfg.Authz.JWTTTL.D(),
		SubjectHeader: cfg.Authz.Identity.Subject, ClientHeader: cfg.Authz.Identity.Client,
		Credentials: broker, RenewBefore: cfg.Credentials.RefreshMargin.D(),
	})
	if err != nil {
		return err
	}
	tracer, err := tracing.New(ctx, tracing.Options{Endpoint: cfg.Tracing.OTLPEndpoint, Insecure: cfg.Tracing.Insecure, SampleRatio: cfg.Tracing.SampleRatio, Service: "warden"})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = tracer.Shutdown(sctx)
		cancel()
	}()
	tasks := taskStore(st)
	pins, err := toolPins(st, trail, catalog, reg, log)
	if err != nil {
		return err
	}
	// The store dropped a removed server's pins; this copy goes too.
	servers.OnRemove(func(_ context.Context, _, name string) error {
		pins.Forget(name)
		return nil
	})
	lastUse := usage.New(usage.Options{Store: st, Logger: log})
	svc, err := authz.New(authz.Options{
		Resolver: st, Servers: catalog, Policy: engine, Audit: trail.Decisions(), Attacher: attacher, Tasks: tasks, Arguments: tasks,
		ResourceURL: cfg.ResourceURL, ResourceMetadataURL: cfg.ResourceMetadataURL,
		PublicURL: cfg.PublicURL, AllowedOrigins: cfg.Authz.AllowedOrigins, AllowedHosts: cfg.Authz.AllowedHosts,
		MaxBodyBytes: cfg.Authz.MaxBodyBytes, Timeout: cfg.Authz.Timeout.D(), ServerFromPath: cfg.Authz.ServerFromPath,
		LastUse: lastUse, Metrics: authz.NewMetrics(reg), Logger: log, Tracer: tracer.Tracer("github.com/warden-mcp/warden/authz"),
		Accounts: st, Connect: late,
		ToolHeaders: pins, Pins: pins,
		Redact: redaction(cfg.Audit.Redact),
	})
	if err != nil {
		return err
	}

	// The CheckRequest carries the body plus headers and attributes.
	authzOpts, err := withTLS(authz.ServerOptions(cfg.Authz.MaxBodyBytes+(64<<10)), cfg.Listen.TLS.Authz, log)
	if err != nil {
		return fmt.Errorf("listen.tls.authz: %w", err)
	}
	if cfg.Listen.TLS.Authz.Enabled() && !cfg.XDS.WardenAuthzTLS.Enabled() {
		log.Warn("listen.tls.authz is on but xds.warden_authz_tls is not set: Envoys that take the warden_authz cluster from xDS cannot reach ext_authz (those started from `warden envoy bootstrap --tls-*` use their static cluster)")
	}
	grpcSrv := grpc.NewServer(authzOpts...)
	authv3.RegisterAuthorizationServer(grpcSrv, svc)
	if err := registerExtProc(grpcSrv, svc, engine, pins, tasks, reg, log); err != nil {
		return err
	}
	hs := health.NewServer()
	healthpb.RegisterHealthServer(grpcSrv, hs)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	xdsSrv, err := xds.New(xds.Options{Source: servers, Settings: xdsSettings(cfg), NodeIDs: cfg.XDS.NodeIDs, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	xdsOpts, err := withTLS(xds.GRPCServerOptions(), cfg.Listen.TLS.XDS, log)
	if err != nil {
		return fmt.Errorf("listen.tls.xds: %w", err)
	}
	xdsGRPC := grpc.NewServer(xdsOpts...)
	xdsSrv.Register(xdsGRPC)

	tokens, err := adminTokens(cfg, adminToken)
	if err != nil {
		return err
	}
	adminAPI := admin.New(admin.Options{
		Tokens: tokens, Store: st, Registry: servers, Grants: grants, Audit: trail, Usage: lastUse,
		ResourceURL: cfg.ResourceURL, Gatherer: reg, Logger: log, Tools: pins,
		Pprof: cfg.Debug.Pprof, ServerProblem: xdsSrv.CheckServer, AuditKeys: signer.PublicSet,
		Providers: providers, ProviderCallbackURL: providerCallbackURL(cfg),
		RotateSigning: func() (string, error) {
			if err := signer.Rotate(); err != nil {
				return "", err
			}
			return signer.KeyID(), nil
		},
		RotateSealing: func() (string, error) {
			if shared != nil {
				if err := shared.ring.Rotate(context.Background()); err != nil {
					return "", err
				}
				return shared.ring.Primary(), nil
			}
			if ringFromEnv {
				return "", errors.New("the keyring comes from WARDEN_SEALING_KEYS: put a new key first in it and restart")
			}
			if err := ring.RotateFile(cfg.Keys.SealingFile); err != nil {
				return "", err
			}
			return ring.Primary(), nil
		}, XDSStatus: func() any { return xdsSrv.Status() },
		PolicyStatus: func() any { return engine.Status() },
		Replay:       replay.New(replay.Options{Store: st}),
		Warnings: map[string]admin.Check{
			// A failed reload leaves the last good policy serving: Warden
			// stays ready, and the operator sees why the files on disk are
			// not in force.
			"policy": func() error {
				if s := engine.Status(); s.LastError != "" {
					return fmt.Errorf("serving revision %s; the newest policy files failed to load: %s", s.Revision, s.LastError)
				}
				return nil
			},
		},
		Ready: map[string]admin.Check{
			"store":   storeHealth(st),
			"replica": replicaReady(st),
			"xds": func() error {
				if st := xdsSrv.Status(); !st.Ready {
					return fmt.Errorf("no snapshot published yet: %s", st.LastError)
				}
				return nil
			},
		},
	})

	oauthOpts, boot, err := oauthOptions(cfg)
	if err != nil {
		return err
	}
	oauthOpts.Store, oauthOpts.Grants, oauthOpts.Signer, oauthOpts.Keyring, oauthOpts.Auditor = st, grants, signer, ring, trail
	oauthOpts.Logger, oauthOpts.Registerer = log, reg
	oauthOpts.SharedLimits = sharedLimits(st)
	oauthOpts.ConnectTTL = cfg.Credentials.ConnectTTL.D()
	authServer, err := oauth.New(oauthOpts)
	if err != nil {
		return err
	}
	// Every revocation also revokes the grant's IdP refresh token at the
	// IdP (RFC 7009), in the background.
	grants.OnRevoke(authServer.RevokeAtIdP)
	late.s = authServer
	if err := showBootstrap(boot, stderr, cfg.DataDir, log); err != nil {
		return err
	}
	adminHandler, err := consoleHandler(cfg, adminAPI, st, trail, oauthOpts.Connector, boot, log)
	if err != nil {
		return err
	}
	httpMux := http.NewServeMux()
	httpMux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	httpMux.Handle("/", authServer.Handler())

	authzLis, err := net.Listen("tcp", cfg.Listen.Authz)
	if err != nil {
		return fmt.Errorf("listen ext_authz: %w", err)
	}
	httpSrv, httpLis, err := listenHTTP(cfg.Listen.HTTP, tracer.Handler(httpMux, "oauth"), cfg.Listen.Limits, log)
	if err != nil {
		return fmt.Errorf("listen http: %w", err)
	}
	adminSrv, adminLis, err := listenHTTP(cfg.Listen.Admin, adminHandler, cfg.Listen.Limits, log)
	if err != nil {
		return fmt.Errorf("listen admin: %w", err)
	}
	xdsLis, err := net.Listen("tcp", cfg.Listen.XDS)
	if err != nil {
		return fmt.Errorf("listen xds: %w", err)
	}

	log.Info("warden serving",
		"ext_authz", authzLis.Addr().String(), "http", httpLis.Addr().String(), "admin", adminLis.Addr().String(), "xds", xdsLis.Addr().String(),
		"public_url", cfg.PublicURL, "data_dir", cfg.DataDir, "policy_revision", engine.Revision())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return grpcSrv.Serve(authzLis) })
	g.Go(func() error { return xdsGRPC.Serve(xdsLis) })
	g.Go(func() error { return xdsSrv.Run(gctx) })
	g.Go(func() error { return ignoreClosed(httpSrv.Serve(httpLis)) })
	g.Go(func() error { return ignoreClosed(adminSrv.Serve(adminLis)) })
	if cfg.Policy.Dir != "" && cfg.Policy.Watch {
		g.Go(func() error { return engine.Watch(gctx) })
	}
	g.Go(func() error { maintain(gctx, st, log); return nil })
	g.Go(func() error { retainAudit(gctx, cfg.Audit.Retention.D(), st, trail, signer, log); return nil })
	g.Go(func() error { lastUse.Run(gctx); return nil })
	if shared != nil {
		g.Go(func() error { shared.watch(gctx, servers); return nil })
	}
	if cfgPath != "" {
		reloads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_config_reloads_total", Help: "Config file changes seen, by result."}, []string{"result"})
		reg.MustRegister(reloads)
		g.Go(func() error {
			return config.Watch(gctx, cfgPath, 0, log, func(next config.Config) {
				// Only the servers section applies live; the rest is read
				// at start.
				if err := providers.Reconcile(gctx, providerSpecs(next.Providers)); err != nil {
					log.Error("config providers not fully applied", "err", err)
				}
				if err := servers.Reconcile(gctx, serverSpecs(next.Servers)); err != nil {
					reloads.WithLabelValues("partial").Inc()
					log.Error("config servers not fully applied", "err", err)
					return
				}
				reloads.WithLabelValues("ok").Inc()
				log.Info("config file changed: servers reconciled (other settings apply at restart)", "servers", len(next.Servers))
			}, func(err error) {
				reloads.WithLabelValues("invalid").Inc()
				log.Error("config file changed but does not load; keeping the running configuration", "err", err)
			})
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: draining in-flight checks")
		hs.Shutdown()
		dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
		defer cancel()
		stopped := make(chan struct{})
		go func() { grpcSrv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-dctx.Done():
			grpcSrv.Stop()
		}
		xdsGRPC.Stop()
		_ = httpSrv.Shutdown(dctx)
		_ = adminSrv.Shutdown(dctx)
		// Both are bounded by the drain timeout: a store that cannot write
		// would otherwise hold the process forever. Either failing makes
		// the exit status non-zero.
		var failed error
		// The last uses seen since the previous flush, before the store
		// closes.
		if err := lastUse.Flush(dctx); err != nil {
			log.Warn("shutdown: last uses not flushed", "err", err)
		}
		if err := trail.Close(dctx); err != nil {
			log.Error("shutdown: audit trail not fully drained", "err", err)
			failed = err
		}
		if err := closeSinks(dctx); err != nil {
			log.Warn("shutdown: audit sinks not fully drained", "err", err)
		}
		if err := closeStore(dctx, st); err != nil {
			log.Error("shutdown: store not closed cleanly; exiting without it", "err", err)
			failed = errors.Join(failed, err)
		}
		if failed != nil {
			return fmt.Errorf("unclean shutdown: %w", failed)
		}
		return nil
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// grantRetention is how long expired and revoked grants stay listable
// (`warden grants list --all`) before they are deleted; the audit trail
// keeps the record beyond that.
const grantRetention = 30 * 24 * time.Hour

// maintain runs the store's housekeeping until ctx ends: Badger value-log
// garbage collection, and deletion of grants past their retention.
func maintain(ctx context.Context, st store.Store, log *slog.Logger) {
	gc := time.NewTicker(10 * time.Minute)
	prune := time.NewTicker(time.Hour)
	defer gc.Stop()
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-gc.C:
			if b, ok := st.(interface{ RunGC() }); ok {
				b.RunGC()
			}
		case <-prune.C:
			n, err := store.PruneGrants(ctx, st, time.Now(), grantRetention)
			if err != nil {
				log.Error("pruning grants", "err", err)
			}
			if n > 0 {
				log.Info("pruned old grants", "deleted", n)
			}
		}
	}
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// loadKeyring reads the key-encryption keys from WARDEN_SEALING_KEYS
// (cfg.Keys.SealingKeys) or the keyring file (created on first start);
// fromEnv tells which.
func loadKeyring(cfg config.Config, log *slog.Logger) (ring *seal.Keyring, fromEnv bool, err error) {
	if v := cfg.Keys.SealingKeys; v != "" {
		ring, err := seal.ParseEnv(v)
		if err != nil {
			return nil, true, fmt.Errorf("WARDEN_SEALING_KEYS: %w", err)
		}
		return ring, true, nil
	}
	ring, created, err := seal.LoadOrCreateFile(cfg.Keys.SealingFile)
	if err != nil {
		return nil, false, fmt.Errorf("sealing keys: %w", err)
	}
	if created {
		log.Info("generated sealing key", "file", cfg.Keys.SealingFile)
	}
	return ring, false, nil
}
