// Package app builds Parley: the one constructor that wires the store, the
// shared Redis state, the model catalog, the chat domain and the HTTP
// surface, and runs them with the shutdown order production needs.
// `parley serve`, `parley dev` and the API tests (internal/apitest) all
// build the service here, so tests exercise the real wiring; what tests
// substitute (a fake model, a clock, a wrapped store) goes in through
// Options, never through a second wiring.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/artifact"
	"github.com/parleyhq/parley/internal/attachment"
	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/billing"
	"github.com/parleyhq/parley/internal/broker"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/clock"
	"github.com/parleyhq/parley/internal/config"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/objstore"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/ratelimit"
	"github.com/parleyhq/parley/internal/redisconn"
	"github.com/parleyhq/parley/internal/respcache"
	"github.com/parleyhq/parley/internal/rpc"
	"github.com/parleyhq/parley/internal/search"
	"github.com/parleyhq/parley/internal/server"
	"github.com/parleyhq/parley/internal/share"
	"github.com/parleyhq/parley/internal/store"
	"github.com/parleyhq/parley/internal/stripeapi"
	"github.com/parleyhq/parley/internal/telemetry"
	"github.com/parleyhq/parley/internal/user"
)

// DefaultRedisPrefix starts every Redis key Parley writes.
const DefaultRedisPrefix = "parley:"

// Options are what the caller provides beside the configuration. The zero
// value builds production: every field is optional.
type Options struct {
	// Log receives the service's logs; nil discards them.
	Log *slog.Logger
	// Listener is where the service serves; nil listens on cfg.Host:cfg.Port.
	Listener net.Listener
	// Verifier checks access tokens; nil fetches the Supabase project's
	// JWKS named by the configuration. App.Close closes it either way.
	Verifier *auth.Verifier

	// Provider, when set, serves every model in cfg.Models instead of the
	// configured OpenAI-compatible API (tests use a fake upstream or the
	// offline responder). Titler then writes titles; nil writes none.
	Provider chat.Provider
	Titler   chat.Titler
	// Plans replaces the plan catalog built from the configuration.
	Plans plan.Resolver
	// RateLimits replaces the limits from the configuration; nil keeps
	// them (and RATE_LIMIT_ENABLED).
	RateLimits *server.RateLimits
	// RedisPrefix starts every Redis key; instances see each other's
	// answers and limits only with the same prefix (DefaultRedisPrefix).
	RedisPrefix string
	// Clock drives checkpoints, sweeps and quota periods; nil is the
	// system clock.
	Clock clock.Clock
	// CheckpointInterval, StopWait and OutputReserve tune generations
	// (see chat.GeneratorConfig); zero keeps their defaults.
	CheckpointInterval, StopWait time.Duration
	OutputReserve                int

	// WrapStore decorates the generation store (to count or time writes).
	WrapStore func(chat.GenerationStore) chat.GenerationStore
	// WrapChat decorates the chat handler (to inject faults).
	WrapChat func(parleyv1connect.ChatServiceHandler) parleyv1connect.ChatServiceHandler
	// Routes are extra HTTP handlers keyed by ServeMux pattern, mounted
	// beside the API (`parley dev` serves its token endpoint this way).
	Routes map[string]http.Handler
	// Ping replaces the database health check.
	Ping func(context.Context) error

	// Agent tunes agent runs (tests shorten timeouts and backoffs, or
	// crash the process after a step is saved); it is called with the
	// configured values.
	Agent func(*agent.RunnerConfig)
	// RiverRescueAfter is how long River waits before delivering again a
	// job whose instance died (default: the step timeout plus a minute).
	RiverRescueAfter time.Duration
	// AgentSweep tunes the sweep for stranded runs (zero: defaults).
	AgentSweep agent.SweepConfig

	// TracerProvider, when set, traces the service on it whatever the
	// configuration says (tests pass an SDK provider over an in-memory
	// exporter); the caller shuts it down. Nil: the service traces to
	// cfg.Tracing's endpoint when one is set, else not at all.
	TracerProvider trace.TracerProvider
}

// App is a built service, ready to Run.
type App struct {
	cfg       config.Config
	respCache *respcache.Redis // the response cache, when on
	log       *slog.Logger
	ln        net.Listener
	store     *store.Store
	verifier  *auth.Verifier
	generator *chat.Generator
	// starting answers /health and holds other requests while New builds
	// the rest; serving is the server on ln, serving from the start.
	starting  *server.Starting
	serving   *server.Running
	models    *chat.Models
	agents    *agentParts
	planCache *plan.Cache // nil when Options.Plans replaced the catalog
	billing   *billing.Service
	// tracer is the tracing of everything New builds; nil when tracing
	// is off, which installs no tracing code at all.
	tracer  trace.TracerProvider
	closers []func()
	// redis is the event log's client, nil without REDIS_URL; the
	// response cache shares it.
	redis     *redis.Client
	closeOnce sync.Once
}

// New builds the service. The listener opens first and serves at once:
// GET /health (liveness) answers from then on, and every other request
// waits for the rest of New, bounded by server.DefaultStartWait (see
// server.Starting). New connects to nothing that could make a cold start
// wait: the pool opens its first connection in the background, Redis on
// first use, and the JWKS loads in the background. On error, whatever was
// built is closed, and requests that were waiting are answered 503.
func New(ctx context.Context, cfg config.Config, opts Options) (a *App, err error) {
	a = &App{cfg: cfg, log: opts.Log}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			a.Close()
			a = nil
		}
	}()
	// The listener opens first so Cloud Run's startup probe connects at once.
	a.ln = opts.Listener
	if a.ln == nil {
		if a.ln, err = net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	a.closers = append(a.closers, func() { a.ln.Close() })
	a.starting = server.NewStarting("", 0)
	a.serving = server.Start(server.NewHTTPServer(a.starting, a.log), a.ln)

	if err = a.startTracing(ctx, opts.TracerProvider); err != nil {
		return nil, err
	}

	if a.verifier = opts.Verifier; a.verifier == nil {
		if a.verifier, err = auth.NewVerifier(ctx, auth.Config{
			Issuer: cfg.IssuerURL(), JWKSURL: cfg.JWKSURL(), HS256Secret: []byte(cfg.SupabaseJWTSecret), Logger: a.log,
		}); err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
	}
	a.closers = append(a.closers, a.verifier.Close)

	if a.store, err = store.Open(ctx, cfg.DatabaseURL, store.Options{
		QueryExecMode: cfg.QueryExecMode, MaxConns: int32(cfg.DatabaseMaxConns), StatementTimeout: cfg.DatabaseStatementTimeout,
		Tracer: a.queryTracer(),
	}); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.store.Close)

	prefix := opts.RedisPrefix
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	events, limiter, err := a.shared(prefix, opts.RateLimits != nil, opts.Clock)
	if err != nil {
		return nil, err
	}

	a.models, err = catalog(cfg, opts, a.tracer)
	if err != nil {
		return nil, err
	}
	plans := opts.Plans
	if plans == nil {
		// Read from the subscriptions table, and kept per instance for 30 s
		// at most: a change (Stripe's webhook, a deleted user) is notified
		// to every instance, whose caches forget it at once (listenAgents),
		// so limits and quotas follow it without a query on every call.
		a.planCache = plan.NewCache(billing.Plans{Catalog: catalogOfPlans(cfg), Store: a.store}, 30*time.Second, 100_000)
		plans = a.planCache
	}
	var genStore chat.GenerationStore = a.store
	if opts.WrapStore != nil {
		genStore = opts.WrapStore(genStore)
	}
	titler := opts.Titler
	if opts.Provider == nil {
		titler = defaultTitler(cfg, a.models)
	}
	// The artifacts the assistant writes through tool calls are the same
	// documents the ArtifactService serves.
	artifacts := artifact.NewService(a.store)
	var tools chat.Toolbox = artifact.NewTools(artifacts, a.log)
	var carry func(request, run context.Context) context.Context
	if a.tracer != nil {
		tools, carry = telemetry.Toolbox(tools, a.tracer), telemetry.Carry
	}
	attachments := a.attachments(cfg, opts)
	a.generator = chat.NewGenerator(genStore, a.models, events, a.log, chat.GeneratorConfig{
		Attachments:         attachments,
		VisionModels:        cfg.VisionModels,
		Tools:               tools,
		Carry:               carry,
		CheckpointInterval:  opts.CheckpointInterval,
		StopWait:            opts.StopWait,
		OutputReserve:       opts.OutputReserve,
		MaxDuration:         cfg.GenerationTimeout,
		ContextTokens:       cfg.ContextTokens,
		MaxOutputTokens:     cfg.MaxOutputTokens,
		Titler:              titler,
		Plans:               plans,
		Usage:               a.store.TokenUsage,
		MaxConcurrent:       cfg.MaxConcurrentGenerations,
		MaxRunning:          cfg.InstanceMaxGenerations,
		MaxFollowers:        cfg.InstanceMaxFollowers,
		MaxFollowersPerUser: cfg.MaxFollowersPerUser,
		Clock:               opts.Clock,
		Temperature:         cfg.ModelTemperature,
		Cache:               a.responseCache(prefix),
		CacheShared:         cfg.ResponseCacheShared,
	})

	var chatHandler parleyv1connect.ChatServiceHandler = rpc.NewChatHandler(chat.NewService(a.store, a.models.Has, a.generator).WithAttachments(attachments), a.generator, chat.NewFeedback(a.store))
	if opts.WrapChat != nil {
		chatHandler = opts.WrapChat(chatHandler)
	}
	searcher, err := search.NewService(a.store, cfg.SearchTextConfig)
	if err != nil {
		return nil, err
	}
	if a.agents, err = a.buildAgents(opts, plans, searcher, artifacts); err != nil {
		return nil, err
	}
	webhooks := a.buildBilling()
	ping := opts.Ping
	if ping == nil {
		ping = a.store.Ping
	}
	limits := rateLimits(cfg)
	if opts.RateLimits != nil {
		limits = *opts.RateLimits
	}
	a.starting.Ready(server.New(server.Deps{
		Log:              a.log,
		Verifier:         a.verifier,
		Chat:             chatHandler,
		Artifact:         rpc.NewArtifactHandler(artifacts),
		Attachment:       rpc.NewAttachmentHandler(attachments),
		Search:           rpc.NewSearchHandler(searcher),
		Agent:            rpc.NewAgentHandler(a.agents.service),
		User:             rpc.NewUserHandler(user.NewService(a.store, plans, a.models.Has, opts.Clock, a.generator).WithBilling(a.billing).WithAttachments(attachments).WithCache(a.cacheForgetter())),
		Billing:          rpc.NewBillingHandler(a.billing),
		Share:            rpc.NewShareHandler(share.NewService(a.store), cfg.PublicURL),
		Tasks:            a.agents.tasks,
		Webhooks:         webhooks,
		Routes:           opts.Routes,
		Ping:             ping,
		AllowedOrigins:   cfg.AllowedOrigins,
		Limiter:          limiter,
		RateLimits:       limits,
		Plans:            plans,
		TrustedProxyHops: cfg.TrustedProxyHops,
		Tracing:          a.tracer,
	}))
	return a, nil
}

// startTracing sets a.tracer: tp when given, else a provider exporting to
// the configured OTLP endpoint, else nothing (tracing off). Close shuts
// down the provider it built, flushing the spans still buffered.
func (a *App) startTracing(ctx context.Context, tp trace.TracerProvider) error {
	if tp == nil && !a.cfg.Tracing.Enabled() {
		return nil
	}
	if tp == nil {
		sdk, err := telemetry.New(ctx, a.cfg.Tracing, server.Version())
		if err != nil {
			return err
		}
		a.closers = append(a.closers, func() {
			// Close runs after Run's shutdown, in the second Run leaves
			// of the grace period for the pool and the logs.
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			if err := sdk.Shutdown(flushCtx); err != nil {
				a.log.Warn("traces not all exported before the deadline", "err", err)
			}
		})
		tp = sdk
	}
	a.tracer = tp
	// Clients and libraries that read the global propagator (rather than
	// the one passed to otelconnect) then speak W3C traceparent too.
	otel.SetTextMapPropagator(telemetry.Propagator())
	return nil
}

// queryTracer is the pool's tracer when tracing is on (see
// telemetry.QueryTracer), else none.
func (a *App) queryTracer() pgx.QueryTracer {
	if a.tracer == nil {
		return nil
	}
	return telemetry.QueryTracer(a.tracer)
}

// redisOptions trace the Redis clients' commands when tracing is on,
// beneath the span of the work that sent them.
func (a *App) redisOptions() []redisconn.Option {
	if a.tracer == nil {
		return nil
	}
	return []redisconn.Option{redisconn.WithTracing(telemetry.ChildrenOnly(a.tracer))}
}

// buildBilling builds the billing service on Stripe when STRIPE_SECRET_KEY
// is set, and returns the webhook endpoint to mount; without the key the
// service answers "billing is not set up" and no endpoint is mounted.
func (a *App) buildBilling() map[string]http.Handler {
	cfg := a.cfg
	var sc billing.Stripe // a nil interface, not a nil *stripeapi.Client
	if cfg.Billing() {
		sc = stripeapi.New(stripeapi.Config{SecretKey: cfg.StripeSecretKey, APIBase: cfg.StripeAPIBase})
	}
	a.billing = billing.NewService(a.store, sc, billing.Config{
		Prices:     map[string]string{plan.Pro: cfg.StripePricePro},
		SuccessURL: cfg.CheckoutSuccessURL,
		CancelURL:  cfg.CheckoutCancelURL,
	}, a.log)
	if sc == nil {
		return nil
	}
	return map[string]http.Handler{stripeapi.WebhookPath: stripeapi.NewWebhook(cfg.StripeWebhookSecret, a.billing, a.log)}
}

// Billing is the billing service, for UserService's DeleteMe (which
// cancels the user's subscription through it).
func (a *App) Billing() *billing.Service { return a.billing }

// shared builds what instances share through Redis (generation events and
// rate limits), or in-process stand-ins when there is no Redis. Rate
// limiting is on when the configuration enables it or forced is set.
func (a *App) shared(prefix string, forced bool, clk clock.Clock) (chat.EventLog, *ratelimit.Resilient, error) {
	cfg := a.cfg
	limited := cfg.RateLimitEnabled || forced
	opts := []broker.Option{broker.WithMaxGeneration(cfg.GenerationTimeout), broker.WithClock(clk)}
	if cfg.RedisURL == "" {
		if cfg.Production() {
			a.log.Warn("REDIS_URL is unset: stop, resume and rate limits only work per instance")
		}
		var limiter *ratelimit.Resilient
		if limited {
			limiter = ratelimit.NewResilient(nil, a.log, ratelimit.WithClock(clk))
		}
		return broker.NewChatLog(broker.NewMemory(cfg.EventLogRetention, opts...)), limiter, nil
	}
	redisconn.SetLogger(a.log)
	client, err := redisconn.NewClient(cfg.RedisURL, a.redisOptions()...)
	if err != nil {
		return nil, nil, errors.New("REDIS_URL: cannot use it as a Redis URL")
	}
	a.closers = append(a.closers, func() { client.Close() })
	a.redis = client
	var limiter *ratelimit.Resilient
	if limited {
		// Its own client, so a slow Redis fails a check in 50ms, not 5s.
		var fast *redis.Client
		if fast, err = redisconn.NewFastClient(cfg.RedisURL, 50*time.Millisecond, a.redisOptions()...); err != nil {
			return nil, nil, errors.New("REDIS_URL: cannot use it as a Redis URL")
		}
		a.closers = append(a.closers, func() { fast.Close() })
		// Checks that overlap go out together, one pipeline on one
		// connection (closed with its client).
		var opts []ratelimit.RedisOption
		if ap, err := redisconn.AutoPipeline(fast); err == nil {
			opts = append(opts, ratelimit.Pipelined(ap))
		} else {
			a.log.Warn("rate-limit checks are not pipelined", "err", err)
		}
		limiter = ratelimit.NewResilient(ratelimit.NewRedis(fast, prefix+"rate:", opts...), a.log, ratelimit.WithClock(clk))
	}
	events := broker.NewRedis(client, prefix, cfg.EventLogRetention, opts...)
	a.closers = append(a.closers, func() { events.Close() })
	return broker.NewChatLog(events), limiter, nil
}

// responseCache is the response cache on the event log's Redis client
// when RESPONSE_CACHE_TTL is set (config requires REDIS_URL for it in
// serve); nil, caching nothing, otherwise.
func (a *App) responseCache(prefix string) chat.ResponseCache {
	if a.cfg.ResponseCacheTTL <= 0 {
		return nil
	}
	if a.redis == nil {
		a.log.Warn("RESPONSE_CACHE_TTL is set but REDIS_URL is not: answers are not cached")
		return nil
	}
	a.respCache = respcache.New(a.redis, prefix, a.cfg.ResponseCacheTTL)
	return a.respCache
}

// catalog builds the model catalog: opts.Provider when given, else the
// configured OpenAI-compatible API, else the offline responder (dev only:
// config refuses `serve` without a provider). With tp, each model call is
// a span.
func catalog(cfg config.Config, opts Options, tp trace.TracerProvider) (*chat.Models, error) {
	traced := func(p chat.Provider) chat.Provider {
		if tp == nil {
			return p
		}
		return telemetry.Provider(p, tp)
	}
	switch {
	case opts.Provider != nil:
		return chat.NewModels().Add(traced(opts.Provider), cfg.Models...), nil
	case cfg.Offline():
		return chat.NewModels().Add(traced(llm.NewOffline(cfg.OfflineWordDelay)), llm.OfflineModel), nil
	}
	provider := llm.NewOpenAI(llm.OpenAIConfig{BaseURL: cfg.OpenAIBaseURL, APIKey: cfg.OpenAIAPIKey, IdleTimeout: cfg.LLMIdleTimeout})
	return chat.NewModels().Add(traced(provider), cfg.Models...), nil
}

// defaultTitler titles new conversations with the conversation's model,
// or with its first words when offline.
func defaultTitler(cfg config.Config, models *chat.Models) chat.Titler {
	if cfg.Offline() {
		return chat.HeuristicTitler{}
	}
	return chat.ProviderTitler{Models: models}
}

// catalogOfPlans builds the plan catalog from the configuration.
func catalogOfPlans(cfg config.Config) plan.Catalog {
	anonymousModels := cfg.PlanAnonymousModels
	if len(anonymousModels) == 0 {
		anonymousModels = cfg.PlanFreeModels
	}
	return plan.Catalog{
		Anonymous: plan.Plan{
			Name: plan.Anonymous, RateMultiplier: cfg.PlanAnonymousRateMultiplier,
			MonthlyTokens: cfg.PlanAnonymousMonthlyTokens, Models: anonymousModels,
		},
		Free: plan.Plan{Name: plan.Free, RateMultiplier: 1, MonthlyTokens: cfg.PlanFreeMonthlyTokens, Models: cfg.PlanFreeModels},
		Pro:  plan.Plan{Name: plan.Pro, RateMultiplier: cfg.PlanProRateMultiplier, MonthlyTokens: cfg.PlanProMonthlyTokens, Models: cfg.PlanProModels},
	}
}

// rateLimits are the configured per-minute limits.
func rateLimits(cfg config.Config) server.RateLimits {
	return server.RateLimits{
		Chat:         ratelimit.PerMinute(cfg.RateLimitChat),
		Agent:        ratelimit.PerMinute(cfg.RateLimitAgent),
		General:      ratelimit.PerMinute(cfg.RateLimitGeneral),
		AuthFailures: ratelimit.PerMinute(cfg.RateLimitAuthFailures),
		SharedReads:  ratelimit.PerMinute(cfg.RateLimitSharedReads),
	}
}

// URL is the base URL the service answers on.
func (a *App) URL() string { return "http://" + a.ln.Addr().String() }

// Run serves until ctx ends, then shuts down in order within
// cfg.ShutdownTimeout (Cloud Run kills ten seconds after SIGTERM):
//
//  1. The listener closes and new answers are refused; answers in flight
//     get a quarter of the grace period to finish.
//  2. The rest are canceled and saved as interrupted with the text they
//     have, which also ends their streams, so the HTTP server can drain.
//  3. Requests still open when the grace period ends are cut.
//
// Run returns once the answers are saved and the server has stopped; call
// Close afterwards. Background work (stop subscription, stale-answer sweep)
// runs while Run does.
func (a *App) Run(ctx context.Context) error {
	// run ends with ctx, or when the server fails: either way the answers
	// in flight are drained and saved before Run returns.
	run, endRun := context.WithCancel(ctx)
	defer endRun()
	background, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	go a.listen(background)
	go a.generator.SweepStale(background)
	agentsStopped := a.agents.start(a, run)

	generationsDone := make(chan struct{})
	go func() {
		defer close(generationsDone)
		<-run.Done()
		// Leave a second of the grace period for the pool and the logs.
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownTimeout-time.Second)
		defer cancel()
		if err := a.generator.Shutdown(shutdownCtx, a.cfg.ShutdownTimeout/4); err != nil {
			a.log.Error("generations did not all save before the deadline", "err", err)
		}
	}()

	a.log.Info("listening", "url", a.URL(), "env", a.cfg.Env, "version", server.Version(), "models", a.models.Names())
	err := a.serving.Wait(run, a.cfg.ShutdownTimeout, a.log)
	endRun()
	<-generationsDone
	<-agentsStopped
	return err
}

// listen subscribes to stop requests from other instances, off the
// start-up path (the subscription waits for Redis), and keeps trying with
// backoff while Redis cannot be reached: until it succeeds, stops from
// other instances reach this one only through the database, seconds later.
func (a *App) listen(ctx context.Context) {
	a.keepTrying(ctx, "cannot subscribe to stop requests; retrying", a.generator.Listen)
}

// keepTrying calls fn until it returns nil or ctx ends, logging each
// failure as what and waiting between tries (1 s, doubling up to 30 s). It
// reports whether fn succeeded before ctx ended.
func (a *App) keepTrying(ctx context.Context, what string, fn func(context.Context) error) bool {
	backoff := time.Second
	for {
		err := fn(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		a.log.Warn(what, "retry_in", backoff.String(), "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// Close releases what New built, in reverse order. It is safe to call more
// than once, and after a failed Run.
func (a *App) Close() {
	a.closeOnce.Do(func() {
		// Serving stops first (at once when Run did not shut it down),
		// answering requests still waiting for a failed New.
		if a.serving != nil {
			a.starting.Fail()
			a.serving.Close()
		}
		for i := len(a.closers) - 1; i >= 0; i-- {
			a.closers[i]()
		}
	})
}

// attachments builds the attachment service: content in PostgreSQL, or in
// the S3-compatible bucket configuration names.
func (a *App) attachments(cfg config.Config, opts Options) *attachment.Service {
	c := attachment.Config{Limits: attachment.Limits(cfg.AttachmentLimits), Clock: opts.Clock, Log: a.log, URLTTL: cfg.AttachmentStorage.URLTTL}
	if s := cfg.AttachmentStorage; s.Bucket != "" {
		c.Blobs = objstore.New(objstore.Config{
			Bucket: s.Bucket, Endpoint: s.Endpoint, Region: s.Region,
			AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey,
		})
	}
	return attachment.NewService(a.store, c)
}

// cacheForgetter is what deletes a deleted user's cached answers: the
// response cache when it is on, else nothing (a nil interface, not a nil
// *respcache.Redis).
func (a *App) cacheForgetter() user.CacheForgetter {
	if a.respCache == nil {
		return nil
	}
	return a.respCache
}
