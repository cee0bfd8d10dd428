// Package config reads Parley's configuration from the environment, once, at
// start-up. Every problem is reported together so an operator fixes them all
// in one go; nothing else in the program reads the environment.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environments Parley knows. Production refuses dev conveniences.
const (
	EnvProduction  = "production"
	EnvDevelopment = "development"
)

// Config is the whole configuration of a Parley process.
type Config struct {
	// Port is the TCP port the server listens on (PORT, default 8080).
	Port int
	// Host is the address to bind (HOST): empty means every interface, as
	// Cloud Run needs; dev binds 127.0.0.1 unless told otherwise.
	Host string
	// Env is "production" or "development" (PARLEY_ENV).
	Env string

	// DatabaseURL is the Postgres connection string (DATABASE_URL).
	DatabaseURL string
	// QueryExecMode is pgx's statement mode (DATABASE_QUERY_EXEC_MODE):
	// "cache_statement" (default) for direct connections; "exec" or
	// "simple_protocol" behind Supavisor or PgBouncer in transaction mode.
	QueryExecMode pgx.QueryExecMode

	// SupabaseURL is the project URL (SUPABASE_URL); tokens must be issued by
	// SupabaseURL + "/auth/v1".
	SupabaseURL string
	// SupabaseJWTSecret enables legacy HS256 tokens (SUPABASE_JWT_SECRET).
	SupabaseJWTSecret string

	// AllowedOrigins are the exact browser origins allowed by CORS (ALLOWED_ORIGINS, comma-separated).
	AllowedOrigins []string

	// LogFormat is "json" (Cloud Logging) or "text" (colored, for humans) (LOG_FORMAT).
	LogFormat string
	// LogLevel is the minimum level logged (LOG_LEVEL: debug, info, warn, error).
	LogLevel slog.Level
	// GoogleCloudProject names the project in trace log fields (GOOGLE_CLOUD_PROJECT, optional).
	GoogleCloudProject string

	// Tracing says where and how much to export OpenTelemetry traces; see
	// TracingConfig. Tracing is off, at no cost, unless an endpoint is set.
	Tracing TracingConfig

	// ShutdownTimeout bounds graceful shutdown (SHUTDOWN_TIMEOUT, default 8s; Cloud Run kills at 10s).
	ShutdownTimeout time.Duration

	// DatabaseMaxConns caps the connections of one instance
	// (DATABASE_MAX_CONNS, default 10).
	DatabaseMaxConns int
	// DatabaseStatementTimeout makes Postgres cancel a statement of the
	// service that runs longer (DATABASE_STATEMENT_TIMEOUT, default 15s;
	// 0 leaves the role's or the server's setting).
	DatabaseStatementTimeout time.Duration

	// RedisURL shares live generations (and later limits) between
	// instances (REDIS_URL; redis:// or rediss://). Empty: in-process only.
	RedisURL string
	// EventLogRetention is how long a finished generation's events stay
	// replayable from Redis (EVENT_LOG_RETENTION, default 10m).
	EventLogRetention time.Duration

	// OpenAIBaseURL is any OpenAI-compatible API (OPENAI_BASE_URL).
	OpenAIBaseURL string
	// OpenAIAPIKey authenticates to it (OPENAI_API_KEY).
	OpenAIAPIKey string
	// Models are the model names offered, the first being the default (PARLEY_MODELS).
	Models []string
	// GenerationTimeout bounds one answer (GENERATION_TIMEOUT, default 5m).
	GenerationTimeout time.Duration
	// LLMIdleTimeout fails an answer when the provider sends nothing for
	// that long (LLM_IDLE_TIMEOUT, default 60s).
	LLMIdleTimeout time.Duration
	// OfflineWordDelay is how long the offline responder of `parley dev`
	// waits before each word (OFFLINE_WORD_DELAY, 15ms: roughly a real
	// model's pace, so streaming is visible); it has no effect when a
	// provider is configured.
	OfflineWordDelay time.Duration
	// ContextTokens is the prompt budget per request (CONTEXT_TOKENS, default 16000).
	ContextTokens int
	// MaxOutputTokens caps an answer (MAX_OUTPUT_TOKENS, 0: the provider's default).
	MaxOutputTokens int
	// ModelTemperature is the sampling temperature of chat answers
	// (MODEL_TEMPERATURE, 0 to 2); nil leaves it to the provider (1 for
	// OpenAI), and it is 0 when the response cache is on and it is unset.
	ModelTemperature *float64
	// ResponseCacheTTL turns the response cache on: answers to
	// deterministic requests (temperature 0) are kept in Redis that long
	// and served again to the same request (RESPONSE_CACHE_TTL; unset: off).
	ResponseCacheTTL time.Duration
	// ResponseCacheShared lets a cached answer serve every user who sends
	// the same request, not only its own user (RESPONSE_CACHE_SHARED,
	// default false).
	ResponseCacheShared bool

	// RateLimitEnabled switches rate limiting (RATE_LIMIT_ENABLED, default true).
	RateLimitEnabled bool
	// RateLimitChat, RateLimitAgent and RateLimitGeneral are requests per
	// minute per user on the free plan (RATE_LIMIT_CHAT 20, RATE_LIMIT_AGENT 5,
	// RATE_LIMIT_GENERAL 100).
	RateLimitChat, RateLimitAgent, RateLimitGeneral int
	// RateLimitAuthFailures is how many calls failing authentication a
	// client IP may make per minute on one instance before it is refused
	// without a token check (RATE_LIMIT_AUTH_FAILURES, default 60).
	RateLimitAuthFailures int
	// RateLimitSharedReads is how many GetSharedConversation calls a
	// client address may make per minute, token or not
	// (RATE_LIMIT_SHARED_READS, default 60).
	RateLimitSharedReads int
	// TrustedProxyHops is how many proxies in front of the service append
	// to X-Forwarded-For (TRUSTED_PROXY_HOPS, default 1: Cloud Run's front
	// end). 0 uses the connection's address.
	TrustedProxyHops int
	// MaxConcurrentGenerations is how many answers a user may have
	// streaming at once (MAX_CONCURRENT_GENERATIONS, default 3).
	MaxConcurrentGenerations int
	// InstanceMaxGenerations caps the answers one instance writes at once,
	// whoever asks (INSTANCE_MAX_GENERATIONS, default 1000).
	InstanceMaxGenerations int
	// InstanceMaxFollowers caps the resumed streams one instance serves at
	// once (INSTANCE_MAX_FOLLOWERS, default 1000); MaxFollowersPerUser
	// those of one user (MAX_FOLLOWERS_PER_USER, default 20).
	InstanceMaxFollowers, MaxFollowersPerUser int
	// Plan settings: monthly token quotas (0: unlimited), the pro plan's
	// rate-limit multiplier and the models each plan may use (empty: all).
	PlanFreeMonthlyTokens, PlanProMonthlyTokens int64
	PlanProRateMultiplier                       float64
	PlanFreeModels, PlanProModels               []string
	// The plan of anonymous sign-ins (Supabase's is_anonymous): a smaller
	// monthly quota (PLAN_ANONYMOUS_MONTHLY_TOKENS, default 20000), a rate
	// multiplier below 1 (PLAN_ANONYMOUS_RATE_MULTIPLIER, default 0.5) and
	// the free plan's models unless PLAN_ANONYMOUS_MODELS lists others.
	PlanAnonymousMonthlyTokens  int64
	PlanAnonymousRateMultiplier float64
	PlanAnonymousModels         []string

	// SearchTextConfig is the PostgreSQL text search configuration of
	// SearchService (SEARCH_TEXT_CONFIG): "simple" (default; words as
	// written, lower-cased, so any language works) or "english" (stemming
	// and stop words). The database keeps vectors for both, so it can be
	// changed at any restart.
	SearchTextConfig string

	// Attachments. VisionModels are the models that read images
	// (PARLEY_VISION_MODELS, default gpt-4o-mini,gpt-4o); the others refuse
	// messages with images. The caps: ATTACHMENT_MAX_COUNT (4),
	// ATTACHMENT_MAX_IMAGE_BYTES (5 MiB), ATTACHMENT_MAX_TEXT_BYTES
	// (256 KiB), ATTACHMENT_MAX_TOTAL_BYTES (7 MiB, also the most allowed),
	// ATTACHMENT_MAX_IMAGE_SIDE (8192) and ATTACHMENT_MAX_IMAGE_PIXELS
	// (16 million).
	VisionModels      []string
	AttachmentLimits  AttachmentLimits
	AttachmentStorage AttachmentStorage

	// Agent runs. AgentStepTimeout bounds one attempt of a step
	// (AGENT_STEP_TIMEOUT, default 4m: well inside Cloud Run's request
	// timeout, 5m by default, which bounds a QStash delivery);
	// AgentMaxAttempts bounds a step's attempts (AGENT_MAX_ATTEMPTS,
	// default 3); AgentMaxActiveRuns caps a user's runs in progress
	// (AGENT_MAX_ACTIVE_RUNS, default 3); AgentWorkers is how many steps
	// one instance runs at once on River (AGENT_WORKERS, default 20; 0: it
	// runs none and leaves them to other instances).
	AgentStepTimeout   time.Duration
	AgentMaxAttempts   int
	AgentMaxActiveRuns int
	AgentWorkers       int

	// QStash push delivery of agent steps, instead of River, when
	// QStashToken is set (QSTASH_TOKEN). QStashURL is the API
	// (QSTASH_URL, default https://qstash.upstash.io); the signing keys
	// (QSTASH_CURRENT_SIGNING_KEY, QSTASH_NEXT_SIGNING_KEY) verify
	// deliveries; PublicURL (PUBLIC_URL) is this service's public base
	// URL, which QStash calls at PublicURL + /tasks/agent-step.
	QStashToken, QStashURL                        string
	QStashCurrentSigningKey, QStashNextSigningKey string
	PublicURL                                     string

	// Billing through Stripe, when StripeSecretKey is set
	// (STRIPE_SECRET_KEY); without it BillingService answers "billing is
	// not set up" and every user is on the free plan. StripeWebhookSecret
	// (STRIPE_WEBHOOK_SECRET, whsec_…) verifies the events Stripe posts to
	// /webhooks/stripe; StripePricePro (STRIPE_PRICE_PRO, price_…) is the
	// pro plan's recurring price; CheckoutSuccessURL and CheckoutCancelURL
	// (CHECKOUT_SUCCESS_URL, CHECKOUT_CANCEL_URL) are where Checkout sends
	// the user back, the first also the billing portal's return link.
	// StripeAPIBase (STRIPE_API_BASE) replaces https://api.stripe.com, for
	// stripe-mock in tests.
	StripeSecretKey, StripeWebhookSecret, StripePricePro string
	CheckoutSuccessURL, CheckoutCancelURL                string
	StripeAPIBase                                        string
}

// TracingConfig is the OpenTelemetry part of the configuration, read from
// the standard OTEL_* variables so collectors and platforms that set them
// work unchanged.
type TracingConfig struct {
	// Endpoint is the OTLP/HTTP URL spans are posted to: the
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given, else
	// OTEL_EXPORTER_OTLP_ENDPOINT with /v1/traces appended (as the
	// OpenTelemetry specification says). Empty: tracing is off.
	Endpoint string
	// Headers are sent with every export (OTEL_EXPORTER_OTLP_TRACES_HEADERS,
	// else OTEL_EXPORTER_OTLP_HEADERS: comma-separated key=value pairs,
	// values URL-encoded), for backends that authenticate by header.
	Headers map[string]string
	// ServiceName names this service on its spans (OTEL_SERVICE_NAME,
	// default "parley").
	ServiceName string
	// SampleRatio is the share of new traces recorded
	// (OTEL_TRACES_SAMPLER_ARG, from 0 to 1, default 1). The sampler is
	// always parent-based: a request whose traceparent says sampled (or
	// not) is recorded (or not) whatever the ratio, so one trace is never
	// half kept.
	SampleRatio float64
}

// Enabled reports whether traces are exported.
func (t TracingConfig) Enabled() bool { return t.Endpoint != "" }

// Billing reports whether Stripe is configured.
func (c Config) Billing() bool { return c.StripeSecretKey != "" }

// QStash reports whether agent steps go through QStash instead of River.
func (c Config) QStash() bool { return c.QStashToken != "" }

// Offline reports whether no model provider is configured: dev then
// answers with the offline responder.
func (c Config) Offline() bool { return c.OpenAIAPIKey == "" && c.OpenAIBaseURL == "" }

// IssuerURL is the token issuer Supabase Auth writes into access tokens.
func (c Config) IssuerURL() string { return strings.TrimRight(c.SupabaseURL, "/") + "/auth/v1" }

// JWKSURL is where Supabase Auth publishes the project's signing keys.
func (c Config) JWKSURL() string { return c.IssuerURL() + "/.well-known/jwks.json" }

// Production reports whether PARLEY_ENV is production.
func (c Config) Production() bool { return c.Env == EnvProduction }

// DevOrigins are the browser origins `parley dev` allows when
// ALLOWED_ORIGINS is unset: Vite's dev server, where `make web` serves the
// page.
var DevOrigins = []string{"http://localhost:5173", "http://127.0.0.1:5173"}

// Mode says which settings are required: serve needs real dependencies; dev
// fills in local defaults for what is missing.
type Mode int

// The modes config.Load understands.
const (
	ModeServe Mode = iota
	ModeDev
	ModeMigrate // only the database settings matter
)

// Load parses the environment through getenv. In ModeServe DATABASE_URL and
// SUPABASE_URL are required; in ModeDev they may be empty (the caller fills
// them from local services). The error lists every problem found.
func Load(getenv func(string) string, mode Mode) (Config, error) {
	p := parser{getenv: getenv}
	cfg := Config{
		Port:                        p.int("PORT", 8080, 0, 65535),
		Host:                        p.str("HOST", ""),
		Env:                         p.oneOf("PARLEY_ENV", EnvProduction, EnvProduction, EnvDevelopment),
		DatabaseURL:                 p.str("DATABASE_URL", ""),
		SupabaseURL:                 p.str("SUPABASE_URL", ""),
		SupabaseJWTSecret:           p.str("SUPABASE_JWT_SECRET", ""),
		AllowedOrigins:              p.origins("ALLOWED_ORIGINS"),
		LogFormat:                   p.oneOf("LOG_FORMAT", "json", "json", "text"),
		LogLevel:                    p.level("LOG_LEVEL"),
		GoogleCloudProject:          p.str("GOOGLE_CLOUD_PROJECT", ""),
		ShutdownTimeout:             p.duration("SHUTDOWN_TIMEOUT", 8*time.Second),
		Tracing:                     p.tracing(),
		QueryExecMode:               p.execMode("DATABASE_QUERY_EXEC_MODE"),
		RedisURL:                    p.str("REDIS_URL", ""),
		DatabaseMaxConns:            p.int("DATABASE_MAX_CONNS", 10, 1, 1000),
		DatabaseStatementTimeout:    p.timeout("DATABASE_STATEMENT_TIMEOUT", 15*time.Second),
		EventLogRetention:           p.duration("EVENT_LOG_RETENTION", 10*time.Minute),
		OpenAIBaseURL:               p.str("OPENAI_BASE_URL", ""),
		OpenAIAPIKey:                p.str("OPENAI_API_KEY", ""),
		Models:                      p.list("PARLEY_MODELS", "gpt-4o-mini"),
		GenerationTimeout:           p.duration("GENERATION_TIMEOUT", 5*time.Minute),
		LLMIdleTimeout:              p.duration("LLM_IDLE_TIMEOUT", 60*time.Second),
		OfflineWordDelay:            p.duration("OFFLINE_WORD_DELAY", 15*time.Millisecond),
		ContextTokens:               p.int("CONTEXT_TOKENS", 16000, 256, 10_000_000),
		MaxOutputTokens:             p.int("MAX_OUTPUT_TOKENS", 0, 0, 1_000_000),
		ModelTemperature:            p.optionalFloat("MODEL_TEMPERATURE", 0, 2),
		ResponseCacheTTL:            p.duration("RESPONSE_CACHE_TTL", 0),
		ResponseCacheShared:         p.bool("RESPONSE_CACHE_SHARED", false),
		RateLimitEnabled:            p.bool("RATE_LIMIT_ENABLED", true),
		RateLimitChat:               p.int("RATE_LIMIT_CHAT", 20, 1, 1_000_000),
		RateLimitAgent:              p.int("RATE_LIMIT_AGENT", 5, 1, 1_000_000),
		RateLimitGeneral:            p.int("RATE_LIMIT_GENERAL", 100, 1, 1_000_000),
		RateLimitAuthFailures:       p.int("RATE_LIMIT_AUTH_FAILURES", 60, 1, 1_000_000),
		RateLimitSharedReads:        p.int("RATE_LIMIT_SHARED_READS", 60, 1, 1_000_000),
		TrustedProxyHops:            p.int("TRUSTED_PROXY_HOPS", 1, 0, 10),
		MaxConcurrentGenerations:    p.int("MAX_CONCURRENT_GENERATIONS", 3, 1, 1000),
		InstanceMaxGenerations:      p.int("INSTANCE_MAX_GENERATIONS", 1000, 1, 100_000),
		InstanceMaxFollowers:        p.int("INSTANCE_MAX_FOLLOWERS", 1000, 1, 1_000_000),
		MaxFollowersPerUser:         p.int("MAX_FOLLOWERS_PER_USER", 20, 1, 10_000),
		PlanFreeMonthlyTokens:       int64(p.int("PLAN_FREE_MONTHLY_TOKENS", 500_000, 0, 1<<50)),
		PlanProMonthlyTokens:        int64(p.int("PLAN_PRO_MONTHLY_TOKENS", 10_000_000, 0, 1<<50)),
		PlanProRateMultiplier:       p.float("PLAN_PRO_RATE_MULTIPLIER", 5, 1, 1000),
		PlanFreeModels:              p.optionalList("PLAN_FREE_MODELS"),
		PlanProModels:               p.optionalList("PLAN_PRO_MODELS"),
		PlanAnonymousMonthlyTokens:  int64(p.int("PLAN_ANONYMOUS_MONTHLY_TOKENS", 20_000, 0, 1<<50)),
		PlanAnonymousRateMultiplier: p.float("PLAN_ANONYMOUS_RATE_MULTIPLIER", 0.5, 0.01, 1000),
		PlanAnonymousModels:         p.optionalList("PLAN_ANONYMOUS_MODELS"),
		// The list is search.Configs (config imports no domain package).
		SearchTextConfig: p.oneOf("SEARCH_TEXT_CONFIG", "simple", "simple", "english"),

		VisionModels: p.list("PARLEY_VISION_MODELS", "gpt-4o-mini,gpt-4o"),
		AttachmentLimits: AttachmentLimits{
			MaxCount:       p.int("ATTACHMENT_MAX_COUNT", 4, 0, AttachmentMaxCountCeiling),
			MaxImageBytes:  p.int("ATTACHMENT_MAX_IMAGE_BYTES", 5<<20, 1, AttachmentMaxRequestBytes),
			MaxTextBytes:   p.int("ATTACHMENT_MAX_TEXT_BYTES", 256<<10, 1, AttachmentMaxRequestBytes),
			MaxTotalBytes:  p.int("ATTACHMENT_MAX_TOTAL_BYTES", AttachmentMaxRequestBytes, 1, AttachmentMaxRequestBytes),
			MaxImageSide:   p.int("ATTACHMENT_MAX_IMAGE_SIDE", 8192, 1, 1<<16),
			MaxImagePixels: p.int("ATTACHMENT_MAX_IMAGE_PIXELS", 16_000_000, 1, 1<<30),
		},
		AttachmentStorage: AttachmentStorage{
			Bucket:          p.str("ATTACHMENT_S3_BUCKET", ""),
			Endpoint:        strings.TrimRight(p.str("ATTACHMENT_S3_ENDPOINT", ""), "/"),
			Region:          p.str("ATTACHMENT_S3_REGION", "us-east-1"),
			AccessKeyID:     p.str("ATTACHMENT_S3_ACCESS_KEY_ID", ""),
			SecretAccessKey: p.str("ATTACHMENT_S3_SECRET_ACCESS_KEY", ""),
			URLTTL:          p.duration("ATTACHMENT_URL_TTL", 5*time.Minute),
		},

		AgentStepTimeout:        p.duration("AGENT_STEP_TIMEOUT", 4*time.Minute),
		AgentMaxAttempts:        p.int("AGENT_MAX_ATTEMPTS", 3, 1, 20),
		AgentMaxActiveRuns:      p.int("AGENT_MAX_ACTIVE_RUNS", 3, 1, 1000),
		AgentWorkers:            p.int("AGENT_WORKERS", 20, 0, 10_000),
		QStashToken:             p.str("QSTASH_TOKEN", ""),
		QStashURL:               p.str("QSTASH_URL", "https://qstash.upstash.io"),
		QStashCurrentSigningKey: p.str("QSTASH_CURRENT_SIGNING_KEY", ""),
		QStashNextSigningKey:    p.str("QSTASH_NEXT_SIGNING_KEY", ""),
		PublicURL:               strings.TrimRight(p.str("PUBLIC_URL", ""), "/"),

		StripeSecretKey:     p.str("STRIPE_SECRET_KEY", ""),
		StripeWebhookSecret: p.str("STRIPE_WEBHOOK_SECRET", ""),
		StripePricePro:      p.str("STRIPE_PRICE_PRO", ""),
		StripeAPIBase:       strings.TrimRight(p.str("STRIPE_API_BASE", ""), "/"),
		CheckoutSuccessURL:  p.str("CHECKOUT_SUCCESS_URL", ""),
		CheckoutCancelURL:   p.str("CHECKOUT_CANCEL_URL", ""),
	}
	if mode == ModeDev {
		if getenv("PARLEY_ENV") == "" {
			cfg.Env = EnvDevelopment
		}
		if getenv("LOG_FORMAT") == "" {
			cfg.LogFormat = "text"
		}
		if cfg.Host == "" {
			cfg.Host = "127.0.0.1"
		}
		if getenv("TRUSTED_PROXY_HOPS") == "" {
			cfg.TrustedProxyHops = 0 // nothing in front of a dev server
		}
		if getenv("ALLOWED_ORIGINS") == "" {
			// The web page's Vite dev server (`make web`) is another origin.
			cfg.AllowedOrigins = DevOrigins
		}
		if cfg.Env == EnvProduction {
			p.fail("PARLEY_ENV", "is production; `parley dev` refuses to run in production (unset it or use `parley serve`)")
		}
	}
	switch mode {
	case ModeServe:
		p.required("DATABASE_URL", cfg.DatabaseURL)
		p.required("SUPABASE_URL", cfg.SupabaseURL)
		if cfg.Offline() {
			p.fail("OPENAI_API_KEY", "is required (or OPENAI_BASE_URL, for a keyless OpenAI-compatible server such as Ollama)")
		}
	case ModeMigrate:
		p.required("DATABASE_URL", cfg.DatabaseURL)
	}
	if cfg.DatabaseURL != "" {
		if _, err := pgx.ParseConfig(cfg.DatabaseURL); err != nil {
			// The parse error can echo the password: keep it out of the message.
			p.fail("DATABASE_URL", "is not a valid PostgreSQL connection string")
		}
	}
	if cfg.RedisURL != "" {
		if u, err := url.Parse(cfg.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			p.fail("REDIS_URL", "must be a redis:// or rediss:// URL")
		}
	}
	if cfg.OpenAIBaseURL != "" {
		if u, err := url.Parse(cfg.OpenAIBaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.fail("OPENAI_BASE_URL", "must be an http(s) URL such as https://api.openai.com/v1")
		}
	}
	if s := cfg.AttachmentStorage; s.Bucket != "" {
		p.required("ATTACHMENT_S3_ACCESS_KEY_ID", s.AccessKeyID)
		p.required("ATTACHMENT_S3_SECRET_ACCESS_KEY", s.SecretAccessKey)
		if u, err := url.Parse(s.Endpoint); s.Endpoint != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
			p.fail("ATTACHMENT_S3_ENDPOINT", "must be an http(s) URL such as https://<ref>.supabase.co/storage/v1/s3")
		}
		if s.URLTTL < time.Second || s.URLTTL > time.Hour {
			// Short-lived: whoever holds the URL reads the file without a
			// token until it expires.
			p.fail("ATTACHMENT_URL_TTL", "must be from 1s to 1h, got %s", s.URLTTL)
		}
	}
	if cfg.ShutdownTimeout < 2*time.Second {
		// A second goes to closing the pool and flushing logs; the rest is
		// split between draining answers and saving the interrupted ones.
		p.fail("SHUTDOWN_TIMEOUT", "must be at least 2s, got %s", cfg.ShutdownTimeout)
	}
	if cfg.AgentStepTimeout < time.Second || cfg.AgentStepTimeout > time.Hour {
		p.fail("AGENT_STEP_TIMEOUT", "must be from 1s to 1h (keep it well inside Cloud Run's request timeout), got %s", cfg.AgentStepTimeout)
	}
	if cfg.QStash() {
		p.required("QSTASH_CURRENT_SIGNING_KEY", cfg.QStashCurrentSigningKey)
		p.required("QSTASH_NEXT_SIGNING_KEY", cfg.QStashNextSigningKey)
		p.required("PUBLIC_URL", cfg.PublicURL)
		if u, err := url.Parse(cfg.QStashURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.fail("QSTASH_URL", "must be an http(s) URL such as https://qstash.upstash.io")
		}
		if cfg.PublicURL != "" {
			u, err := url.Parse(cfg.PublicURL)
			switch {
			case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "":
				p.fail("PUBLIC_URL", "must be the service's public base URL, such as https://parley-abc123-uc.a.run.app")
			case cfg.Production() && u.Scheme == "http" && !isLoopback(u.Hostname()):
				p.fail("PUBLIC_URL", "must be https:// in production: QStash sends the agent's tasks there")
			}
		}
	}
	if cfg.Billing() {
		p.required("STRIPE_WEBHOOK_SECRET", cfg.StripeWebhookSecret)
		p.required("STRIPE_PRICE_PRO", cfg.StripePricePro)
		for _, u := range []struct{ name, value string }{
			{"CHECKOUT_SUCCESS_URL", cfg.CheckoutSuccessURL}, {"CHECKOUT_CANCEL_URL", cfg.CheckoutCancelURL}, {"STRIPE_API_BASE", cfg.StripeAPIBase},
		} {
			if u.value == "" {
				if u.name != "STRIPE_API_BASE" {
					p.required(u.name, u.value)
				}
				continue
			}
			parsed, err := url.Parse(u.value)
			switch {
			case err != nil || (parsed.Scheme != "https" && parsed.Scheme != "http") || parsed.Host == "":
				p.fail(u.name, "must be an http(s) URL")
			case cfg.Production() && parsed.Scheme == "http" && !isLoopback(parsed.Hostname()):
				p.fail(u.name, "must be https:// in production")
			}
		}
	}
	if cfg.ResponseCacheTTL > 0 {
		switch {
		case cfg.ModelTemperature == nil:
			zero := 0.0
			cfg.ModelTemperature = &zero // only deterministic answers are cached
		case *cfg.ModelTemperature != 0:
			p.fail("MODEL_TEMPERATURE", "must be 0 (or unset) while RESPONSE_CACHE_TTL is set: only deterministic answers are cached")
		}
		if cfg.RedisURL == "" && mode == ModeServe {
			p.fail("RESPONSE_CACHE_TTL", "needs REDIS_URL: the response cache is kept in Redis")
		}
	}
	if cfg.ContextTokens <= cfg.MaxOutputTokens {
		p.fail("MAX_OUTPUT_TOKENS", "must be below CONTEXT_TOKENS")
	}
	if cfg.SupabaseJWTSecret != "" && len(cfg.SupabaseJWTSecret) < 32 {
		p.fail("SUPABASE_JWT_SECRET", "must be at least 32 characters (the project's JWT secret from the Supabase dashboard)")
	}
	if cfg.SupabaseURL != "" {
		u, err := url.Parse(cfg.SupabaseURL)
		switch {
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
			p.fail("SUPABASE_URL", "must be an http(s) URL such as https://abcd.supabase.co")
		case cfg.Production() && u.Scheme == "http" && !isLoopback(u.Hostname()):
			// The verifier fetches the token signing keys from here: over
			// plain HTTP anyone on the path could substitute their own.
			p.fail("SUPABASE_URL", "must be https:// in production (http:// is allowed for localhost and loopback addresses only), got %q", cfg.SupabaseURL)
		}
	}
	return cfg, p.err()
}

// AttachmentLimits are the attachment caps configuration sets; internal/app
// hands them to attachment.Limits, which has the same fields (config
// imports no domain package).
type AttachmentLimits struct {
	MaxCount, MaxImageBytes, MaxTextBytes, MaxTotalBytes, MaxImageSide, MaxImagePixels int
}

// The ceilings no configuration may raise: attachment.MaxCountCeiling and
// attachment.MaxRequestBytes (internal/app's tests check they agree).
const (
	AttachmentMaxCountCeiling = 16
	AttachmentMaxRequestBytes = 7 << 20
)

// AttachmentStorage is S3-compatible object storage for attachments'
// content (Supabase Storage's S3 endpoint, Cloud Storage's XML API, S3);
// with no Bucket the content stays in PostgreSQL. ATTACHMENT_S3_BUCKET,
// ATTACHMENT_S3_ENDPOINT (empty: AWS's), ATTACHMENT_S3_REGION (us-east-1),
// ATTACHMENT_S3_ACCESS_KEY_ID, ATTACHMENT_S3_SECRET_ACCESS_KEY;
// ATTACHMENT_URL_TTL (5m) is how long GetAttachment's signed URLs work.
type AttachmentStorage struct {
	Bucket, Endpoint, Region     string
	AccessKeyID, SecretAccessKey string
	URLTTL                       time.Duration
}

// tracing reads the OpenTelemetry variables Parley honours. The OTLP
// exporter and the SDK would read some of them again themselves; New in
// internal/telemetry passes each one explicitly, so what is used is what
// was checked here.
func (p *parser) tracing() TracingConfig {
	t := TracingConfig{
		ServiceName: p.str("OTEL_SERVICE_NAME", "parley"),
		SampleRatio: p.float("OTEL_TRACES_SAMPLER_ARG", 1, 0, 1),
	}
	name, endpoint := "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", p.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	if endpoint == "" {
		if base := p.str("OTEL_EXPORTER_OTLP_ENDPOINT", ""); base != "" {
			name, endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT", strings.TrimRight(base, "/")+"/v1/traces"
		}
	}
	if endpoint != "" {
		if u, err := url.Parse(endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.fail(name, "must be an http(s) URL such as http://localhost:4318 (OTLP over HTTP), got %q", endpoint)
		} else {
			t.Endpoint = endpoint
		}
	}
	headersName, headers := "OTEL_EXPORTER_OTLP_TRACES_HEADERS", p.str("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "")
	if headers == "" {
		headersName, headers = "OTEL_EXPORTER_OTLP_HEADERS", p.str("OTEL_EXPORTER_OTLP_HEADERS", "")
	}
	for _, pair := range strings.Split(headers, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		value, err := url.PathUnescape(strings.TrimSpace(v))
		if !ok || k == "" || err != nil {
			// The value may be a credential: name the key only.
			p.fail(headersName, "must be comma-separated key=value pairs; the entry for %q is not", k)
			continue
		}
		if t.Headers == nil {
			t.Headers = map[string]string{}
		}
		t.Headers[k] = value
	}
	return t
}

// isLoopback reports whether host names this machine: "localhost" or a
// loopback IP address. Traffic to it never crosses a network.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.IsLoopback()
}

type parser struct {
	getenv   func(string) string
	problems []string
}

func (p *parser) fail(name, format string, args ...any) {
	p.problems = append(p.problems, name+" "+fmt.Sprintf(format, args...))
}

func (p *parser) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	return errors.New("invalid configuration:\n  " + strings.Join(p.problems, "\n  "))
}

func (p *parser) str(name, def string) string {
	if v := strings.TrimSpace(p.getenv(name)); v != "" {
		return v
	}
	return def
}

func (p *parser) required(name, value string) {
	if value == "" {
		p.fail(name, "is required")
	}
}

func (p *parser) int(name string, def, lo, hi int) int {
	raw := p.str(name, "")
	if raw == "" {
		return def
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < lo || n > hi {
		p.fail(name, "must be a whole number from %d to %d, got %q", lo, hi, raw)
		return def
	}
	return n
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	raw := p.str(name, "")
	if raw == "" {
		return def
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d <= 0 {
		p.fail(name, "must be a positive duration such as 8s or 2m, got %q", raw)
		return def
	}
	return d
}

// timeout is a duration that "0" switches off. Postgres counts whole
// milliseconds, and 0 there means no timeout, so anything from 1ns to
// 999µs is refused rather than silently meaning none.
func (p *parser) timeout(name string, def time.Duration) time.Duration {
	raw := p.str(name, "")
	if raw == "" {
		return def
	}
	d, err := time.ParseDuration(raw)
	if err == nil && d == 0 {
		return 0
	}
	if err != nil || d < time.Millisecond {
		p.fail(name, "must be a duration of at least 1ms such as 15s, or 0 for none, got %q", raw)
		return def
	}
	return d
}

func (p *parser) oneOf(name, def string, allowed ...string) string {
	raw := strings.ToLower(p.str(name, def))
	for _, a := range allowed {
		if raw == a {
			return raw
		}
	}
	p.fail(name, "must be one of %s, got %q", strings.Join(allowed, ", "), raw)
	return def
}

func (p *parser) level(name string) slog.Level {
	raw := p.str(name, "info")
	var l slog.Level
	if err := l.UnmarshalText([]byte(raw)); err != nil {
		p.fail(name, "must be debug, info, warn or error, got %q", raw)
		return slog.LevelInfo
	}
	return l
}

func (p *parser) execMode(name string) pgx.QueryExecMode {
	raw := p.str(name, "cache_statement")
	modes := map[string]pgx.QueryExecMode{
		"cache_statement": pgx.QueryExecModeCacheStatement,
		"cache_describe":  pgx.QueryExecModeCacheDescribe,
		"describe_exec":   pgx.QueryExecModeDescribeExec,
		"exec":            pgx.QueryExecModeExec,
		"simple_protocol": pgx.QueryExecModeSimpleProtocol,
	}
	m, ok := modes[raw]
	if !ok {
		p.fail(name, "must be one of cache_statement, cache_describe, describe_exec, exec, simple_protocol, got %q", raw)
		return pgx.QueryExecModeCacheStatement
	}
	return m
}

func (p *parser) bool(name string, def bool) bool {
	raw := p.str(name, "")
	if raw == "" {
		return def
	}
	v, err := strconv.ParseBool(raw)
	if err != nil {
		p.fail(name, "must be true or false, got %q", raw)
		return def
	}
	return v
}

// optionalFloat is a number from lo to hi, or nil when unset.
func (p *parser) optionalFloat(name string, lo, hi float64) *float64 {
	if p.str(name, "") == "" {
		return nil
	}
	v := p.float(name, lo, lo, hi)
	return &v
}

func (p *parser) float(name string, def, lo, hi float64) float64 {
	raw := p.str(name, "")
	if raw == "" {
		return def
	}
	v, err := strconv.ParseFloat(raw, 64)
	if err != nil || v < lo || v > hi {
		p.fail(name, "must be a number from %g to %g, got %q", lo, hi, raw)
		return def
	}
	return v
}

func (p *parser) optionalList(name string) []string {
	var out []string
	for _, v := range strings.Split(p.str(name, ""), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func (p *parser) list(name, def string) []string {
	var out []string
	for _, v := range strings.Split(p.str(name, def), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		p.fail(name, "must name at least one model")
	}
	return out
}

func (p *parser) origins(name string) []string {
	raw := p.str(name, "")
	if raw == "" {
		return nil
	}
	var out []string
	for _, o := range strings.Split(raw, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o == "*" {
			p.fail(name, "must list exact origins: \"*\" is refused because requests carry credentials")
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			p.fail(name, "entry %q must be an origin such as https://app.example.com", o)
			continue
		}
		out = append(out, strings.TrimSuffix(o, "/"))
	}
	return out
}
