// Package apitest runs Parley's real HTTP surface in-process for tests: the
// server package's handler and HTTP server on a loopback port, a real store
// on the test database, and a verifier fed from a dev signing key, with
// generated clients for each protocol Parley serves.
package apitest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/broker"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/ratelimit"
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
	URL   string
	Store *store.Store
	Key   *auth.DevKey
	// HTTPClient speaks h2c to the server.
	HTTPClient *http.Client
	// Generator runs this server's generations.
	Generator *chat.Generator
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
	Provider llm.Provider
	// Models are the offered model names, the first the default
	// (llm.OfflineModel when nil).
	Models []string
	// RedisURL and RedisPrefix select a Redis event log; servers that share
	// both (and the database) act as instances of one deployment. Without
	// them each server has an in-memory log.
	RedisURL, RedisPrefix string
	// Retention is how long finished logs stay (1 minute when zero).
	Retention time.Duration
	// Generator tunes generations.
	Generator chat.GeneratorConfig
	// WrapStore decorates the generation store (to count writes, say).
	WrapStore func(chat.GenerationStore) chat.GenerationStore

	// RateLimits enables rate limiting with these limits: on Redis when
	// RedisURL is set (shared by servers with the same RedisPrefix), else in
	// memory.
	RateLimits *server.RateLimits
	// Plans scale rate limits and set quotas.
	Plans plan.Resolver
	// TrustedProxyHops configures client IPs for unauthenticated calls.
	TrustedProxyHops int
}

// New starts a server for the test's lifetime on the package's test database
// (see pgtest.Main).
func New(tb testing.TB, opts Options) *Env {
	tb.Helper()
	st := store.New(pgtest.Pool(tb))
	key, err := auth.LoadOrCreateDevKey(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	verifier, err := auth.NewStaticVerifier(auth.Config{Issuer: Issuer}, key.JWKS())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(verifier.Close)
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	provider, names := opts.Provider, opts.Models
	if provider == nil {
		provider = llm.NewOffline(0)
	}
	if names == nil {
		names = []string{llm.OfflineModel}
	}
	models := chat.NewModels().Add(provider, names...)
	var genStore chat.GenerationStore = st
	if opts.WrapStore != nil {
		genStore = opts.WrapStore(st)
	}
	retention := opts.Retention
	if retention == 0 {
		retention = time.Minute
	}
	var events chat.EventLog = broker.NewMemory(retention)
	var shared ratelimit.Limiter
	if opts.RedisURL != "" {
		client, err := broker.NewClient(opts.RedisURL)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { client.Close() })
		events = broker.NewRedis(client, opts.RedisPrefix, retention)
		shared = ratelimit.NewRedis(client, opts.RedisPrefix+"rate:")
	}
	var limiter *ratelimit.Resilient
	var limits server.RateLimits
	if opts.RateLimits != nil {
		limiter, limits = ratelimit.NewResilient(shared, log), *opts.RateLimits
	}
	if opts.Plans != nil {
		opts.Generator.Plans = opts.Plans
	}
	generator := chat.NewGenerator(genStore, models, events, log, opts.Generator)
	listenCtx, stopListening := context.WithCancel(context.Background())
	tb.Cleanup(stopListening)
	if err := generator.Listen(listenCtx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		generator.Shutdown(ctx, 0)
	})
	var handler parleyv1connect.ChatServiceHandler = rpc.NewChatHandler(chat.NewService(st, models.Has), generator)
	if opts.Chat != nil {
		handler = opts.Chat(handler.(*rpc.ChatHandler))
	}
	ping := opts.Ping
	if ping == nil {
		ping = st.Ping
	}
	h := server.New(server.Deps{
		Log: log, Verifier: verifier, Chat: handler, Ping: ping, AllowedOrigins: opts.AllowedOrigins,
		Limiter: limiter, RateLimits: limits, Plans: opts.Plans, TrustedProxyHops: opts.TrustedProxyHops,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := server.NewHTTPServer(h, log)
	go srv.Serve(ln)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &Env{URL: "http://" + ln.Addr().String(), Store: st, Key: key, HTTPClient: H2CClient(), Generator: generator}
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
