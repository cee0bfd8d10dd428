package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/broker"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/config"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/ratelimit"
	"github.com/parleyhq/parley/internal/rpc"
	"github.com/parleyhq/parley/internal/server"
	"github.com/parleyhq/parley/internal/store"
)

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if err := parseFlags(newFlagSet("serve"), args); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv, config.ModeServe)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stdout)
	// The listener opens first so Cloud Run's startup probe connects at
	// once; the pool connects lazily and the JWKS loads in the background.
	ln, err := listen(cfg)
	if err != nil {
		return err
	}
	verifier, err := auth.NewVerifier(ctx, auth.Config{
		Issuer:      cfg.IssuerURL(),
		JWKSURL:     cfg.JWKSURL(),
		HS256Secret: []byte(cfg.SupabaseJWTSecret),
		Logger:      log,
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("auth: %w", err)
	}
	defer verifier.Close()
	return serve(ctx, cfg, log, ln, verifier)
}

func listen(cfg config.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// models builds the model catalog: the configured OpenAI-compatible API,
// or the offline responder when none is configured (dev only: serve
// refuses to start without a provider).
func models(cfg config.Config) (*chat.Models, chat.Titler) {
	if cfg.Offline() {
		return chat.NewModels().Add(llm.NewOffline(llm.DefaultOfflineDelay), llm.OfflineModel), chat.HeuristicTitler{}
	}
	provider := llm.NewOpenAI(llm.OpenAIConfig{BaseURL: cfg.OpenAIBaseURL, APIKey: cfg.OpenAIAPIKey, IdleTimeout: cfg.LLMIdleTimeout})
	m := chat.NewModels().Add(provider, cfg.Models...)
	return m, chat.ProviderTitler{Models: m}
}

// shared builds what instances share through Redis (generation events and
// rate limits), or in-process stand-ins when there is no Redis.
func shared(cfg config.Config, log *slog.Logger) (chat.EventLog, *ratelimit.Resilient, func(), error) {
	opts := []broker.Option{broker.WithMaxGeneration(cfg.GenerationTimeout)}
	var limiter *ratelimit.Resilient
	if cfg.RedisURL == "" {
		if cfg.Production() {
			log.Warn("REDIS_URL is unset: stop, resume and rate limits only work per instance")
		}
		if cfg.RateLimitEnabled {
			limiter = ratelimit.NewResilient(nil, log)
		}
		return broker.NewMemory(cfg.EventLogRetention, opts...), limiter, func() {}, nil
	}
	client, err := broker.NewClient(cfg.RedisURL)
	if err != nil {
		return nil, nil, nil, errors.New("REDIS_URL: cannot use it as a Redis URL")
	}
	closeAll := func() { client.Close() }
	if cfg.RateLimitEnabled {
		// Its own client, so a slow Redis fails a check in 50ms, not 5s.
		fast, err := broker.NewFastClient(cfg.RedisURL, 50*time.Millisecond)
		if err != nil {
			client.Close()
			return nil, nil, nil, errors.New("REDIS_URL: cannot use it as a Redis URL")
		}
		limiter = ratelimit.NewResilient(ratelimit.NewRedis(fast, "parley:rate:"), log)
		closeAll = func() { client.Close(); fast.Close() }
	}
	return broker.NewRedis(client, "parley:", cfg.EventLogRetention, opts...), limiter, closeAll, nil
}

// plans builds the plan catalog from the configuration.
func plans(cfg config.Config) plan.Catalog {
	return plan.Catalog{
		Free: plan.Plan{Name: plan.Free, RateMultiplier: 1, MonthlyTokens: cfg.PlanFreeMonthlyTokens, Models: cfg.PlanFreeModels},
		Pro:  plan.Plan{Name: plan.Pro, RateMultiplier: cfg.PlanProRateMultiplier, MonthlyTokens: cfg.PlanProMonthlyTokens, Models: cfg.PlanProModels},
	}
}

// serve wires the dependencies and runs the HTTP server on ln until ctx
// ends; this is the one place that builds everything.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger, ln net.Listener, verifier *auth.Verifier) error {
	st, err := store.Open(ctx, cfg.DatabaseURL, store.Options{QueryExecMode: cfg.QueryExecMode, MaxConns: int32(cfg.DatabaseMaxConns)})
	if err != nil {
		ln.Close()
		return err
	}
	defer st.Close()
	events, limiter, closeShared, err := shared(cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer closeShared()
	catalogOfPlans := plans(cfg)

	catalog, titler := models(cfg)
	chatService := chat.NewService(st, catalog.Has)
	generator := chat.NewGenerator(st, catalog, events, log, chat.GeneratorConfig{
		MaxDuration:     cfg.GenerationTimeout,
		ContextTokens:   cfg.ContextTokens,
		MaxOutputTokens: cfg.MaxOutputTokens,
		Titler:          titler,
		Plans:           catalogOfPlans,
		MaxConcurrent:   cfg.MaxConcurrentGenerations,
	})
	listenCtx, stopListening := context.WithCancel(context.WithoutCancel(ctx))
	defer stopListening()
	go func() {
		// Off the start-up path: the subscription waits for Redis.
		if err := generator.Listen(listenCtx); err != nil {
			// Stops from other instances will not reach this one; local
			// stops and everything else still work.
			log.Warn("cannot subscribe to stop requests", "err", err)
		}
	}()
	go sweepStale(listenCtx, st, cfg.GenerationTimeout, log)

	handler := server.New(server.Deps{
		Log:            log,
		Verifier:       verifier,
		Chat:           rpc.NewChatHandler(chatService, generator),
		Ping:           st.Ping,
		AllowedOrigins: cfg.AllowedOrigins,
		Limiter:        limiter,
		RateLimits: server.RateLimits{
			Chat:         ratelimit.PerMinute(cfg.RateLimitChat),
			Agent:        ratelimit.PerMinute(cfg.RateLimitAgent),
			General:      ratelimit.PerMinute(cfg.RateLimitGeneral),
			AuthFailures: ratelimit.PerMinute(cfg.RateLimitAuthFailures),
		},
		Plans:            catalogOfPlans,
		TrustedProxyHops: cfg.TrustedProxyHops,
	})
	srv := server.NewHTTPServer(handler, log)

	// On SIGTERM, answers in flight get a quarter of the grace period to finish;
	// the rest are saved as interrupted, which also ends their streams so
	// the HTTP server can drain.
	generationsDone := make(chan struct{})
	go func() {
		defer close(generationsDone)
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout-time.Second)
		defer cancel()
		// A quarter of the grace period to finish, then the interrupted
		// saves, well before the pool closes.
		if err := generator.Shutdown(shutdownCtx, cfg.ShutdownTimeout/4); err != nil {
			log.Error("generations did not all save before the deadline", "err", err)
		}
	}()

	log.Info("listening", "url", "http://"+ln.Addr().String(), "env", cfg.Env, "version", server.Version(), "models", catalog.Names())
	err = server.Serve(ctx, srv, ln, cfg.ShutdownTimeout, log)
	if ctx.Err() != nil {
		<-generationsDone
	}
	return err
}

// sweepStale marks answers whose instance died mid-generation as
// interrupted, once they are older than the longest generation.
func sweepStale(ctx context.Context, st *store.Store, maxDuration time.Duration, log *slog.Logger) {
	ticker := time.NewTicker(time.Minute)
	defer ticker.Stop()
	for {
		n, err := st.InterruptStale(ctx, time.Now().Add(-maxDuration-time.Minute))
		if err != nil && ctx.Err() == nil {
			log.Warn("stale answer sweep failed", "err", err)
		}
		if n > 0 {
			log.Warn("marked abandoned answers interrupted", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
