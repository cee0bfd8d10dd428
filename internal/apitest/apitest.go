// Package apitest runs Parley's real HTTP surface in-process for tests: the
// service as internal/app builds it for `parley serve`, on a loopback port,
// on the package's test database, with a verifier fed from a dev signing
// key, and generated clients for each protocol Parley serves.
package apitest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/attachment"
	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/clock"
	"github.com/parleyhq/parley/internal/config"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/qstash/qstashtest"
	"github.com/parleyhq/parley/internal/rpc"
	"github.com/parleyhq/parley/internal/server"
	"github.com/parleyhq/parley/internal/store"
)

// Issuer is the token issuer the test verifier accepts.
const Issuer = "http://apitest.localhost/auth/v1"

// Protocols lists every wire protocol a client may use, by name.
var Protocols = []string{"connect+json", "connect+proto", "grpc", "grpcweb"}

// Env is a running Parley server and what a test needs to call it.
type Env struct {
	URL string
	// Store is a store on the server's database, for a test to look at
	// or seed rows directly; the server has its own pool.
	Store *store.Store
	Key   *auth.DevKey
	// HTTPClient speaks h2c to the server.
	HTTPClient *http.Client
	// Stop shuts the server down as SIGTERM would (answers in flight get
	// a quarter of the grace period, then are saved as interrupted) and
	// returns when it has; later calls do nothing.
	Stop func()
}

// Options adjust New.
type Options struct {
	// Chat replaces the chat handler (to wrap it, for example).
	Chat func(*rpc.ChatHandler) parleyv1connect.ChatServiceHandler
	// Ping replaces the database health check.
	Ping func(context.Context) error
	// Log receives the server's logs; discarded when nil.
	Log *slog.Logger
	// AllowedOrigins configures CORS.
	AllowedOrigins []string

	// Provider serves the models; the offline responder (no delay) when nil.
	Provider chat.Provider
	// Models are the offered model names, the first the default
	// (llm.OfflineModel when nil).
	Models []string
	// RedisURL and RedisPrefix select a Redis event log; servers that share
	// both (and the database) act as instances of one deployment. Without
	// them each server has an in-memory log.
	RedisURL, RedisPrefix string
	// Retention is how long finished logs stay (1 minute when zero).
	Retention time.Duration
	// Generator tunes generations: MaxDuration, MaxConcurrent, MaxRunning,
	// MaxFollowers, MaxFollowersPerUser, ContextTokens and MaxOutputTokens
	// become the configuration's,
	// CheckpointInterval, StopWait, OutputReserve, Titler and Clock the
	// app's options.
	Generator chat.GeneratorConfig
	// WrapStore decorates the generation store (to count writes, say).
	WrapStore func(chat.GenerationStore) chat.GenerationStore
	// Clock drives checkpoints, sweeps and quota periods (the system
	// clock when nil).
	Clock clock.Clock

	// RateLimits enables rate limiting with these limits: on Redis when
	// RedisURL is set (shared by servers with the same RedisPrefix), else in
	// memory.
	RateLimits *server.RateLimits
	// Plans scale rate limits and set quotas (the configuration's default
	// catalog when nil).
	Plans plan.Resolver
	// TrustedProxyHops configures client IPs for unauthenticated calls.
	TrustedProxyHops int
	// ShutdownTimeout is the grace period of Stop (2s when zero).
	ShutdownTimeout time.Duration
	// SearchTextConfig is SEARCH_TEXT_CONFIG (the default, simple, when
	// empty).
	SearchTextConfig string

	// Agent tunes agent runs (app.Options.Agent); RiverRescueAfter is
	// app.Options.RiverRescueAfter.
	Agent            func(*agent.RunnerConfig)
	RiverRescueAfter time.Duration
	// AgentSweep is app.Options.AgentSweep.
	AgentSweep agent.SweepConfig
	// AgentMaxActiveRuns is AGENT_MAX_ACTIVE_RUNS (the default when 0).
	AgentMaxActiveRuns int
	// NoAgentWorkers is AGENT_WORKERS=0: the instance runs no steps.
	NoAgentWorkers bool
	// QStash, when set, delivers agent steps through that stand-in instead
	// of River: the service publishes to it, and it calls the service's
	// signed endpoint at the test server's own URL.
	QStash *qstashtest.Server
	// DatabaseURL replaces the package's test database (a database of the
	// test's own, from pgtest.NewDatabase).
	DatabaseURL string
	// PlansFromDatabase makes the server resolve plans as production does
	// (the subscriptions table, cached per instance) instead of giving
	// every test user an unlimited plan.
	PlansFromDatabase bool
	// TracerProvider traces the server on it (app.Options.TracerProvider):
	// an SDK provider over tracetest's in-memory exporter lets a test
	// read the spans production would export. The test shuts it down.
	TracerProvider trace.TracerProvider
	// ResponseCacheTTL turns the response cache on (RESPONSE_CACHE_TTL;
	// it needs RedisURL), and ResponseCacheShared shares it across users.
	ResponseCacheTTL    time.Duration
	ResponseCacheShared bool
	// StripeURL, when set, turns billing on against that Stripe API (a
	// stripe-mock from stripetest), with StripeWebhookSecret,
	// StripePricePro and the Checkout URLs below.
	StripeURL string
	// VisionModels is PARLEY_VISION_MODELS (none when nil); AttachmentLimits
	// the ATTACHMENT_MAX_* caps (the defaults when nil); AttachmentStorage
	// the ATTACHMENT_S3_* bucket (content in PostgreSQL when its Bucket is
	// empty).
	VisionModels      []string
	AttachmentLimits  *attachment.Limits
	AttachmentStorage config.AttachmentStorage
}

// The billing settings of a server with Options.StripeURL.
const (
	StripeWebhookSecret = "whsec_parley_test"
	StripePricePro      = "price_parley_pro"
	CheckoutSuccessURL  = "https://app.example.com/billing/done"
	CheckoutCancelURL   = "https://app.example.com/billing"
)

// New starts a server for the test's lifetime on the package's test database
// (see pgtest.Main), built by app.New as `parley serve` builds it.
func New(tb testing.TB, opts Options) *Env {
	tb.Helper()
	key, err := auth.LoadOrCreateDevKey(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	verifier, err := auth.NewStaticVerifier(auth.Config{Issuer: Issuer}, key.JWKS())
	if err != nil {
		tb.Fatal(err)
	}
	cfg := Config(tb, opts)
	provider := opts.Provider
	if provider == nil {
		provider = llm.NewOffline(0)
	}
	var plans plan.Resolver = unlimited{}
	if opts.Plans != nil {
		plans = opts.Plans
	}
	if opts.PlansFromDatabase {
		plans = nil // app.New builds the production resolver
	}
	appOpts := app.Options{
		Log:                opts.Log,
		Verifier:           verifier,
		Provider:           provider,
		Titler:             opts.Generator.Titler,
		Plans:              plans,
		RateLimits:         opts.RateLimits,
		RedisPrefix:        opts.RedisPrefix,
		Clock:              opts.Clock,
		CheckpointInterval: opts.Generator.CheckpointInterval,
		StopWait:           opts.Generator.StopWait,
		OutputReserve:      opts.Generator.OutputReserve,
		WrapStore:          opts.WrapStore,
		Ping:               opts.Ping,
		Agent:              opts.Agent,
		RiverRescueAfter:   opts.RiverRescueAfter,
		AgentSweep:         opts.AgentSweep,
		TracerProvider:     opts.TracerProvider,
	}
	if opts.Generator.Clock != nil {
		appOpts.Clock = opts.Generator.Clock
	}
	if opts.Plans == nil && opts.Generator.Plans != nil {
		appOpts.Plans = opts.Generator.Plans
	}
	if opts.Chat != nil {
		appOpts.WrapChat = func(h parleyv1connect.ChatServiceHandler) parleyv1connect.ChatServiceHandler {
			return opts.Chat(h.(*rpc.ChatHandler))
		}
	}
	if appOpts.Listener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	// The server's own address is its public URL, as behind Cloud Run:
	// QStash calls it, and share links point at it.
	cfg.PublicURL = "http://" + appOpts.Listener.Addr().String()
	if q := opts.QStash; q != nil {
		cfg.QStashURL, cfg.QStashToken = q.URL(), q.Token()
		cfg.QStashCurrentSigningKey, cfg.QStashNextSigningKey = q.CurrentKey(), q.NextKey()
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, appOpts)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-ran:
				if err != nil && !errors.Is(err, http.ErrServerClosed) {
					tb.Errorf("apitest: server: %v", err)
				}
			case <-time.After(cfg.ShutdownTimeout + 5*time.Second):
				tb.Errorf("apitest: the server did not stop within its grace period; goroutines:\n%s", goroutines())
			}
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				a.Close()
			}()
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				// Close waits for the pool's connections: one is still in use.
				tb.Errorf("apitest: the server did not close within 10s; goroutines:\n%s", goroutines())
			}
		})
	}
	tb.Cleanup(stop)
	return &Env{URL: a.URL(), Store: store.New(pool(tb, cfg.DatabaseURL)), Key: key, HTTPClient: H2CClient(), Stop: stop}
}

// goroutines is a dump of every goroutine's stack, for a test that hangs.
func goroutines() string {
	var b strings.Builder
	pprof.Lookup("goroutine").WriteTo(&b, 1) //nolint:errcheck // a Builder does not fail
	return b.String()
}

// pool is a pool on the database at url, closed when the test ends.
func pool(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatalf("apitest: pool: %v", err)
	}
	pc.MaxConns = 2
	p, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		tb.Fatalf("apitest: pool: %v", err)
	}
	tb.Cleanup(p.Close)
	return p
}

// Config is the configuration New runs the service with: the package's
// test database, no Supabase project (tokens come from the dev key), and
// opts' settings.
func Config(tb testing.TB, opts Options) config.Config {
	tb.Helper()
	cfg, err := config.Load(func(string) string { return "" }, config.ModeDev)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.DatabaseURL = pgtest.URL(tb)
	if opts.DatabaseURL != "" {
		cfg.DatabaseURL = opts.DatabaseURL
	}
	// Small pools: a test package runs many servers at once against one
	// PostgreSQL (DATABASE_URL's has the default 100 connections), and
	// each server also holds River's notifier and the agent listener.
	cfg.DatabaseMaxConns = 4
	cfg.RedisURL = opts.RedisURL
	cfg.EventLogRetention = opts.Retention
	if cfg.EventLogRetention == 0 {
		cfg.EventLogRetention = time.Minute
	}
	cfg.Models = opts.Models
	if cfg.Models == nil {
		cfg.Models = []string{llm.OfflineModel}
	}
	cfg.VisionModels = opts.VisionModels
	if opts.AttachmentLimits != nil {
		cfg.AttachmentLimits = config.AttachmentLimits(*opts.AttachmentLimits)
	}
	if opts.AttachmentStorage.Bucket != "" {
		cfg.AttachmentStorage = opts.AttachmentStorage
	}
	cfg.AllowedOrigins = opts.AllowedOrigins
	cfg.TrustedProxyHops = opts.TrustedProxyHops
	cfg.RateLimitEnabled = false // on only with opts.RateLimits
	cfg.ShutdownTimeout = opts.ShutdownTimeout
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 2 * time.Second
	}
	if opts.NoAgentWorkers {
		cfg.AgentWorkers = 0
	}
	if opts.AgentMaxActiveRuns > 0 {
		cfg.AgentMaxActiveRuns = opts.AgentMaxActiveRuns
	}
	if opts.SearchTextConfig != "" {
		cfg.SearchTextConfig = opts.SearchTextConfig
	}
	if opts.StripeURL != "" {
		cfg.StripeSecretKey, cfg.StripeAPIBase = "sk_test_parley", opts.StripeURL
		cfg.StripeWebhookSecret, cfg.StripePricePro = StripeWebhookSecret, StripePricePro
		cfg.CheckoutSuccessURL, cfg.CheckoutCancelURL = CheckoutSuccessURL, CheckoutCancelURL
	}
	if opts.ResponseCacheTTL > 0 {
		zero := 0.0
		cfg.ResponseCacheTTL, cfg.ResponseCacheShared, cfg.ModelTemperature = opts.ResponseCacheTTL, opts.ResponseCacheShared, &zero
	}
	g := opts.Generator
	if g.MaxDuration > 0 {
		cfg.GenerationTimeout = g.MaxDuration
	}
	if g.MaxConcurrent > 0 {
		cfg.MaxConcurrentGenerations = g.MaxConcurrent
	}
	if g.ContextTokens > 0 {
		cfg.ContextTokens = g.ContextTokens
	}
	if g.MaxOutputTokens > 0 {
		cfg.MaxOutputTokens = g.MaxOutputTokens
	}
	if g.MaxRunning > 0 {
		cfg.InstanceMaxGenerations = g.MaxRunning
	}
	if g.MaxFollowers > 0 {
		cfg.InstanceMaxFollowers = g.MaxFollowers
	}
	if g.MaxFollowersPerUser > 0 {
		cfg.MaxFollowersPerUser = g.MaxFollowersPerUser
	}
	return cfg
}

// unlimited is the plan resolver of tests that set none: no quota, every
// model, as before plans existed.
type unlimited struct{}

func (unlimited) PlanOf(context.Context, uuid.UUID) (plan.Plan, error) {
	return plan.Plan{Name: plan.Free, RateMultiplier: 1}, nil
}

// H2CClient returns a client that speaks HTTP/2 without TLS (prior
// knowledge), as gRPC clients and Cloud Run's --use-http2 front end do.
func H2CClient() *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &protocols}}
}

// HTTPClientFor returns the client a real peer of protocol would use:
// h2c for gRPC, HTTP/1.1 for Connect and gRPC-Web (as browsers and curl).
func HTTPClientFor(protocol string) *http.Client {
	if protocol == "grpc" {
		return H2CClient()
	}
	return &http.Client{Transport: &http.Transport{}}
}

// Token returns a valid access token for userID.
func (e *Env) Token(tb testing.TB, userID uuid.UUID) string {
	tb.Helper()
	token, err := e.Key.Sign(Issuer, userID, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return token
}

// ClientOptions returns the connect options for a protocol name from Protocols.
func ClientOptions(protocol string) []connect.ClientOption {
	switch protocol {
	case "connect+json":
		return []connect.ClientOption{connect.WithProtoJSON()}
	case "connect+proto":
		return nil
	case "grpc":
		return []connect.ClientOption{connect.WithGRPC()}
	case "grpcweb":
		return []connect.ClientOption{connect.WithGRPCWeb()}
	}
	panic("apitest: unknown protocol " + protocol)
}

// ChatClient returns a ChatService client over protocol that authenticates
// as userID (uuid.Nil: sends no token).
func (e *Env) ChatClient(tb testing.TB, protocol string, userID uuid.UUID) parleyv1connect.ChatServiceClient {
	tb.Helper()
	opts := ClientOptions(protocol)
	if userID != uuid.Nil {
		opts = append(opts, connect.WithInterceptors(Bearer(e.Token(tb, userID))))
	}
	return parleyv1connect.NewChatServiceClient(HTTPClientFor(protocol), e.URL, opts...)
}

// ArtifactClient returns an ArtifactService client over protocol that
// authenticates as userID (uuid.Nil: sends no token).
func (e *Env) ArtifactClient(tb testing.TB, protocol string, userID uuid.UUID) parleyv1connect.ArtifactServiceClient {
	tb.Helper()
	return parleyv1connect.NewArtifactServiceClient(HTTPClientFor(protocol), e.URL, e.clientOptions(tb, protocol, userID)...)
}

// AttachmentClient returns an AttachmentService client over protocol that
// authenticates as userID (uuid.Nil: sends no token).
func (e *Env) AttachmentClient(tb testing.TB, protocol string, userID uuid.UUID) parleyv1connect.AttachmentServiceClient {
	tb.Helper()
	return parleyv1connect.NewAttachmentServiceClient(HTTPClientFor(protocol), e.URL, e.clientOptions(tb, protocol, userID)...)
}

// SearchClient returns a SearchService client over protocol that
// authenticates as userID (uuid.Nil: sends no token).
func (e *Env) SearchClient(tb testing.TB, protocol string, userID uuid.UUID) parleyv1connect.SearchServiceClient {
	tb.Helper()
	return parleyv1connect.NewSearchServiceClient(HTTPClientFor(protocol), e.URL, e.clientOptions(tb, protocol, userID)...)
}

// BillingClient returns a BillingService client over protocol that
// authenticates as userID (uuid.Nil: sends no token).
func (e *Env) BillingClient(tb testing.TB, protocol string, userID uuid.UUID) parleyv1connect.BillingServiceClient {
	tb.Helper()
	return parleyv1connect.NewBillingServiceClient(HTTPClientFor(protocol), e.URL, e.clientOptions(tb, protocol, userID)...)
}

// AnonymousBillingClient is BillingClient for an anonymous sign-in.
func (e *Env) AnonymousBillingClient(tb testing.TB, protocol string, userID uuid.UUID) parleyv1connect.BillingServiceClient {
	tb.Helper()
	token, err := e.Key.SignAnonymous(Issuer, userID, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	opts := append(ClientOptions(protocol), connect.WithInterceptors(Bearer(token)))
	return parleyv1connect.NewBillingServiceClient(HTTPClientFor(protocol), e.URL, opts...)
}

// AgentClient returns an AgentService client for userID over protocol.
func (e *Env) AgentClient(tb testing.TB, protocol string, userID uuid.UUID) parleyv1connect.AgentServiceClient {
	tb.Helper()
	return parleyv1connect.NewAgentServiceClient(HTTPClientFor(protocol), e.URL, e.clientOptions(tb, protocol, userID)...)
}

// UserClient returns a UserService client for userID over protocol.
func (e *Env) UserClient(tb testing.TB, protocol string, userID uuid.UUID) parleyv1connect.UserServiceClient {
	tb.Helper()
	return parleyv1connect.NewUserServiceClient(HTTPClientFor(protocol), e.URL, e.clientOptions(tb, protocol, userID)...)
}

// UserClientWithToken returns a UserService client over protocol that
// sends token (from Key.SignWithEmail or Key.SignAnonymous, say).
func (e *Env) UserClientWithToken(protocol, token string) parleyv1connect.UserServiceClient {
	opts := append(ClientOptions(protocol), connect.WithInterceptors(Bearer(token)))
	return parleyv1connect.NewUserServiceClient(HTTPClientFor(protocol), e.URL, opts...)
}

func (e *Env) clientOptions(tb testing.TB, protocol string, userID uuid.UUID) []connect.ClientOption {
	tb.Helper()
	opts := ClientOptions(protocol)
	if userID != uuid.Nil {
		opts = append(opts, connect.WithInterceptors(Bearer(e.Token(tb, userID))))
	}
	return opts
}

// Bearer returns a client interceptor that sends token on every call.
func Bearer(token string) connect.Interceptor { return bearer(token) }

type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// ShareClient returns a ShareService client over protocol that
// authenticates as userID (uuid.Nil: sends no token).
func (e *Env) ShareClient(tb testing.TB, protocol string, userID uuid.UUID) parleyv1connect.ShareServiceClient {
	tb.Helper()
	return parleyv1connect.NewShareServiceClient(HTTPClientFor(protocol), e.URL, e.clientOptions(tb, protocol, userID)...)
}
