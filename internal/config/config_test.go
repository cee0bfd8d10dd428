package config

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLoad(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		cfg, err := Load(env(map[string]string{
			"PORT":                     "9090",
			"DATABASE_URL":             "postgres://u:secret@db:5432/app",
			"DATABASE_QUERY_EXEC_MODE": "simple_protocol",
			"SUPABASE_URL":             "https://abcd.supabase.co/",
			"OPENAI_API_KEY":           "sk-test",
			"ALLOWED_ORIGINS":          "https://app.example.com, http://localhost:5173",
			"LOG_LEVEL":                "debug",
			"SHUTDOWN_TIMEOUT":         "5s",
			"INSTANCE_MAX_GENERATIONS": "40",
			"INSTANCE_MAX_FOLLOWERS":   "50",
			"MAX_FOLLOWERS_PER_USER":   "5",
		}), ModeServe)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Port != 9090 || cfg.QueryExecMode != pgx.QueryExecModeSimpleProtocol || cfg.ShutdownTimeout != 5*time.Second {
			t.Errorf("unexpected config %+v", cfg)
		}
		if got, want := cfg.IssuerURL(), "https://abcd.supabase.co/auth/v1"; got != want {
			t.Errorf("IssuerURL = %q, want %q", got, want)
		}
		if got, want := cfg.JWKSURL(), "https://abcd.supabase.co/auth/v1/.well-known/jwks.json"; got != want {
			t.Errorf("JWKSURL = %q, want %q", got, want)
		}
		if len(cfg.AllowedOrigins) != 2 || cfg.AllowedOrigins[1] != "http://localhost:5173" {
			t.Errorf("AllowedOrigins = %q", cfg.AllowedOrigins)
		}
		if !cfg.Production() || cfg.LogFormat != "json" {
			t.Errorf("serve defaults: env %q format %q", cfg.Env, cfg.LogFormat)
		}
		if cfg.InstanceMaxGenerations != 40 || cfg.InstanceMaxFollowers != 50 || cfg.MaxFollowersPerUser != 5 {
			t.Errorf("instance limits = %d, %d, %d; want 40, 50, 5", cfg.InstanceMaxGenerations, cfg.InstanceMaxFollowers, cfg.MaxFollowersPerUser)
		}
		if cfg.PlanAnonymousMonthlyTokens != 20_000 || cfg.PlanAnonymousRateMultiplier != 0.5 || cfg.PlanAnonymousMonthlyTokens >= cfg.PlanFreeMonthlyTokens {
			t.Errorf("anonymous plan defaults: %d tokens at %gx, want a smaller plan than free's %d", cfg.PlanAnonymousMonthlyTokens, cfg.PlanAnonymousRateMultiplier, cfg.PlanFreeMonthlyTokens)
		}
	})
	t.Run("ErrEveryProblemAtOnce", func(t *testing.T) {
		t.Parallel()
		_, err := Load(env(map[string]string{
			"PORT":                           "http",
			"LOG_FORMAT":                     "xml",
			"ALLOWED_ORIGINS":                "*",
			"DATABASE_URL":                   "postgres://u:hunter2@db:notaport/app",
			"DATABASE_STATEMENT_TIMEOUT":     "500us",
			"PLAN_ANONYMOUS_RATE_MULTIPLIER": "0",
			"INSTANCE_MAX_GENERATIONS":       "0",
			"SHUTDOWN_TIMEOUT":               "1s",
		}), ModeServe)
		if err == nil {
			t.Fatal("want error")
		}
		for _, want := range []string{"PORT", "LOG_FORMAT", "ALLOWED_ORIGINS", "SUPABASE_URL is required", "DATABASE_URL is not a valid", "DATABASE_STATEMENT_TIMEOUT", "PLAN_ANONYMOUS_RATE_MULTIPLIER", "INSTANCE_MAX_GENERATIONS", "SHUTDOWN_TIMEOUT"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error leaks the database password: %q", err)
		}
	})
	t.Run("DevDefaults", func(t *testing.T) {
		t.Parallel()
		cfg, err := Load(env(nil), ModeDev)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Env != EnvDevelopment || cfg.LogFormat != "text" {
			t.Errorf("dev defaults: env %q format %q", cfg.Env, cfg.LogFormat)
		}
		if !slices.Equal(cfg.AllowedOrigins, DevOrigins) {
			t.Errorf("dev origins = %q; want Vite's dev server %q", cfg.AllowedOrigins, DevOrigins)
		}
		if cfg.OfflineWordDelay != 15*time.Millisecond {
			t.Errorf("offline word delay = %v; want 15ms", cfg.OfflineWordDelay)
		}
		serve, err := Load(env(map[string]string{"DATABASE_URL": "postgres://localhost/x", "SUPABASE_URL": "https://x.supabase.co", "OPENAI_API_KEY": "k"}), ModeServe)
		if err != nil {
			t.Fatal(err)
		}
		if len(serve.AllowedOrigins) != 0 {
			t.Errorf("serve allows origins %q without ALLOWED_ORIGINS", serve.AllowedOrigins)
		}
		own, err := Load(env(map[string]string{"ALLOWED_ORIGINS": "https://app.example.com", "OFFLINE_WORD_DELAY": "200ms"}), ModeDev)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(own.AllowedOrigins, []string{"https://app.example.com"}) || own.OfflineWordDelay != 200*time.Millisecond {
			t.Errorf("dev with ALLOWED_ORIGINS and OFFLINE_WORD_DELAY set: %q, %v", own.AllowedOrigins, own.OfflineWordDelay)
		}
	})
	t.Run("ErrDevInProduction", func(t *testing.T) {
		t.Parallel()
		_, err := Load(env(map[string]string{"PARLEY_ENV": "production"}), ModeDev)
		if err == nil || !strings.Contains(err.Error(), "refuses to run in production") {
			t.Fatalf("err = %v, want refusal", err)
		}
	})
	t.Run("DatabaseStatementTimeout", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name, value string
			want        time.Duration
		}{
			{"Default", "", 15 * time.Second},
			{"OK", "2s", 2 * time.Second},
			{"OneMillisecond", "1ms", time.Millisecond},
			{"ZeroMeansNone", "0", 0},
			{"ZeroWithUnitMeansNone", "0s", 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				cfg, err := Load(env(map[string]string{"DATABASE_STATEMENT_TIMEOUT": tt.value}), ModeDev)
				if err != nil {
					t.Fatal(err)
				}
				if cfg.DatabaseStatementTimeout != tt.want {
					t.Errorf("DatabaseStatementTimeout = %v, want %v", cfg.DatabaseStatementTimeout, tt.want)
				}
			})
		}
		// Postgres counts whole milliseconds and reads 0 as no timeout:
		// a value that would round to none is an error, not none.
		for _, bad := range []struct{ name, value string }{{"ErrBelowOneMillisecond", "500us"}, {"ErrNegative", "-1s"}, {"ErrNoUnit", "15"}} {
			t.Run(bad.name, func(t *testing.T) {
				_, err := Load(env(map[string]string{"DATABASE_STATEMENT_TIMEOUT": bad.value}), ModeDev)
				if err == nil || !strings.Contains(err.Error(), "DATABASE_STATEMENT_TIMEOUT must be a duration of at least 1ms") {
					t.Errorf("err = %v, want DATABASE_STATEMENT_TIMEOUT refused", err)
				}
			})
		}
	})
}

// TestSupabaseURLScheme: in production the signing keys are fetched from
// SUPABASE_URL, so it must be https unless it names this machine.
func TestSupabaseURLScheme(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     string
		url     string
		wantErr bool
	}{
		{"OKHTTPS", EnvProduction, "https://abcd.supabase.co", false},
		{"OKLoopbackIPv4", EnvProduction, "http://127.0.0.1:54321", false},
		{"OKLoopbackIPv6", EnvProduction, "http://[::1]:54321", false},
		{"OKLocalhost", EnvProduction, "http://localhost:54321", false},
		{"OKHTTPInDevelopment", EnvDevelopment, "http://supabase.internal:8000", false},
		{"ErrHTTPInProduction", EnvProduction, "http://abcd.supabase.co", true},
		{"ErrHTTPPrivateAddressInProduction", EnvProduction, "http://10.0.0.7:8000", true},
		{"ErrLocalhostLookalike", EnvProduction, "http://localhost.example.com", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(env(map[string]string{
				"PARLEY_ENV":     tt.env,
				"DATABASE_URL":   "postgres://u@db:5432/app",
				"SUPABASE_URL":   tt.url,
				"OPENAI_API_KEY": "sk-test",
			}), ModeServe)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "SUPABASE_URL must be https://") {
					t.Fatalf("err = %v, want SUPABASE_URL must be https://", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSearchTextConfig: the text search configuration is one of those the
// database keeps vectors for (migration 00006); anything else is refused
// at start-up rather than failing every search.
func TestSearchTextConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value, want string
	}{
		{"Default", "", "simple"},
		{"Simple", "simple", "simple"},
		{"English", "english", "english"},
		{"CaseInsensitive", "English", "english"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(env(map[string]string{"SEARCH_TEXT_CONFIG": tt.value}), ModeDev)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.SearchTextConfig != tt.want {
				t.Errorf("SearchTextConfig = %q, want %q", cfg.SearchTextConfig, tt.want)
			}
		})
	}
	t.Run("ErrUnknown", func(t *testing.T) {
		t.Parallel()
		_, err := Load(env(map[string]string{"SEARCH_TEXT_CONFIG": "german"}), ModeDev)
		if err == nil || !strings.Contains(err.Error(), `SEARCH_TEXT_CONFIG must be one of simple, english, got "german"`) {
			t.Errorf("err = %v, want SEARCH_TEXT_CONFIG refused", err)
		}
	})
}

// TestStripe: billing is off without STRIPE_SECRET_KEY; with it, the
// webhook secret, the pro price and both return URLs are required, at
// once, and URLs must be https:// in production.
func TestStripe(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "postgres://u@db:5432/app", "SUPABASE_URL": "https://abcd.supabase.co", "OPENAI_API_KEY": "sk-test"}
	full := map[string]string{
		"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_x", "STRIPE_PRICE_PRO": "price_x",
		"CHECKOUT_SUCCESS_URL": "https://app.example.com/billing/done", "CHECKOUT_CANCEL_URL": "https://app.example.com/billing",
	}
	with := func(extra ...map[string]string) map[string]string {
		m := map[string]string{}
		for _, e := range append([]map[string]string{base}, extra...) {
			for k, v := range e {
				m[k] = v
			}
		}
		return m
	}
	tests := []struct {
		name     string
		env      map[string]string
		wantErrs []string
		billing  bool
	}{
		{"OffWithoutKey", with(), nil, false},
		{"OK", with(full), nil, true},
		{"OKStripeMockOnLoopback", with(full, map[string]string{"STRIPE_API_BASE": "http://127.0.0.1:12111/"}), nil, true},
		{"ErrMissing", with(map[string]string{"STRIPE_SECRET_KEY": "sk_test_x"}),
			[]string{"STRIPE_WEBHOOK_SECRET is required", "STRIPE_PRICE_PRO is required", "CHECKOUT_SUCCESS_URL is required", "CHECKOUT_CANCEL_URL is required"}, true},
		{"ErrHTTPInProduction", with(full, map[string]string{"CHECKOUT_SUCCESS_URL": "http://app.example.com/done"}),
			[]string{"CHECKOUT_SUCCESS_URL must be https://"}, true},
		{"ErrNotAURL", with(full, map[string]string{"STRIPE_API_BASE": "stripe-mock:12111"}), []string{"STRIPE_API_BASE must be an http(s) URL"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(env(tt.env), ModeServe)
			if len(tt.wantErrs) == 0 && err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.wantErrs {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want %q", err, want)
				}
			}
			if cfg.Billing() != tt.billing {
				t.Errorf("Billing() = %t, want %t", cfg.Billing(), tt.billing)
			}
		})
	}
	cfg, err := Load(env(with(full, map[string]string{"STRIPE_API_BASE": "http://127.0.0.1:12111/"})), ModeServe)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StripeAPIBase != "http://127.0.0.1:12111" || cfg.StripePricePro != "price_x" || cfg.StripeWebhookSecret != "whsec_x" {
		t.Errorf("Stripe settings %q %q %q", cfg.StripeAPIBase, cfg.StripePricePro, cfg.StripeWebhookSecret)
	}
}

// TestResponseCache: off by default; on, it needs Redis (in serve) and a
// temperature of 0, which it sets when none is given.
func TestResponseCache(t *testing.T) {
	t.Parallel()
	serve := map[string]string{"DATABASE_URL": "postgres://u@db:5432/app", "SUPABASE_URL": "https://abcd.supabase.co", "OPENAI_API_KEY": "sk-test"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range serve {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	t.Run("OffByDefault", func(t *testing.T) {
		t.Parallel()
		cfg, err := Load(env(serve), ModeServe)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ResponseCacheTTL != 0 || cfg.ResponseCacheShared || cfg.ModelTemperature != nil {
			t.Errorf("defaults: ttl %v, shared %v, temperature %v", cfg.ResponseCacheTTL, cfg.ResponseCacheShared, cfg.ModelTemperature)
		}
	})
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		cfg, err := Load(env(with(map[string]string{"RESPONSE_CACHE_TTL": "1h", "RESPONSE_CACHE_SHARED": "true", "REDIS_URL": "redis://r:6379"})), ModeServe)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ResponseCacheTTL != time.Hour || !cfg.ResponseCacheShared || cfg.ModelTemperature == nil || *cfg.ModelTemperature != 0 {
			t.Errorf("ttl %v, shared %v, temperature %v", cfg.ResponseCacheTTL, cfg.ResponseCacheShared, cfg.ModelTemperature)
		}
	})
	t.Run("Temperature", func(t *testing.T) {
		t.Parallel()
		cfg, err := Load(env(with(map[string]string{"MODEL_TEMPERATURE": "0.7"})), ModeServe)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ModelTemperature == nil || *cfg.ModelTemperature != 0.7 {
			t.Errorf("temperature %v, want 0.7", cfg.ModelTemperature)
		}
	})
	t.Run("Err", func(t *testing.T) {
		t.Parallel()
		_, err := Load(env(with(map[string]string{"RESPONSE_CACHE_TTL": "1h", "MODEL_TEMPERATURE": "0.7"})), ModeServe)
		for _, want := range []string{"MODEL_TEMPERATURE must be 0", "RESPONSE_CACHE_TTL needs REDIS_URL"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want it to say %q", err, want)
			}
		}
		if _, err := Load(env(with(map[string]string{"MODEL_TEMPERATURE": "3"})), ModeServe); err == nil || !strings.Contains(err.Error(), "MODEL_TEMPERATURE") {
			t.Errorf("temperature 3: err = %v", err)
		}
	})
}
