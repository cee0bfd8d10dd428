// Package server assembles Parley's HTTP surface: the Connect services with
// their interceptors, health, reflection and CORS, served over HTTP/1.1 and
// h2c from one port, with graceful shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"connectrpc.com/connect"
	connectcors "connectrpc.com/cors"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/otelconnect"
	"github.com/rs/cors"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/logging"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/ratelimit"
	"github.com/parleyhq/parley/internal/rpc"
	"github.com/parleyhq/parley/internal/telemetry"
)

// Deps is everything the HTTP surface needs, built once in internal/app.
type Deps struct {
	Log      *slog.Logger
	Verifier *auth.Verifier
	Chat     parleyv1connect.ChatServiceHandler
	// Artifact and Search serve their services; nil leaves the service
	// unmounted (tests of the HTTP surface alone).
	Artifact   parleyv1connect.ArtifactServiceHandler
	Attachment parleyv1connect.AttachmentServiceHandler
	Search     parleyv1connect.SearchServiceHandler
	Agent      parleyv1connect.AgentServiceHandler
	User       parleyv1connect.UserServiceHandler
	Billing    parleyv1connect.BillingServiceHandler
	Share      parleyv1connect.ShareServiceHandler
	// Tasks receives pushed task deliveries (QStash's) outside the Connect
	// API, at the path of each entry; they authenticate by signature, not
	// by access token.
	Tasks map[string]http.Handler
	// Webhooks receive third parties' event notifications (Stripe's) at
	// the path of each entry, outside the Connect API; like Tasks they
	// authenticate by signature.
	Webhooks map[string]http.Handler
	// Routes are extra handlers mounted as given, keyed by their ServeMux
	// pattern ("GET /dev/token"): `parley dev`'s conveniences. They sit
	// outside the Connect API and its interceptors, behind CORS.
	Routes map[string]http.Handler
	// Ping reports whether the database answers; gRPC health turns
	// NOT_SERVING while it fails.
	Ping           func(context.Context) error
	AllowedOrigins []string
	Version        string

	// Limiter applies RateLimits; nil disables rate limiting.
	Limiter    *ratelimit.Resilient
	RateLimits RateLimits
	// Plans scale the rate limits per user.
	Plans plan.Resolver
	// TrustedProxyHops says which X-Forwarded-For entry is the client's
	// address for unauthenticated calls (see clientIP).
	TrustedProxyHops int
	// BodyTimeout bounds the time from a one-message call's headers to the
	// end of its body (DefaultBodyTimeout when zero); see limitBodies.
	BodyTimeout time.Duration

	// Tracing, when set, gives every RPC a server span (otelconnect) and
	// every delivery to Tasks and Webhooks one of its own, each a child of
	// the trace an incoming traceparent names (read by Propagator,
	// telemetry.Propagator when nil). Nil Tracing:
	// nothing is traced and no tracing code runs.
	Tracing    trace.TracerProvider
	Propagator propagation.TextMapPropagator
}

// Version returns the module version or VCS revision the binary was built from.
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	return "devel"
}

// isPublic reports whether a procedure needs no access token.
func isPublic(procedure string) bool {
	switch procedure {
	case "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
		// Whoever has a share's id may read it; the id is the secret.
		parleyv1connect.ShareServiceGetSharedConversationProcedure:
		return true
	}
	return false
}

// New returns the root handler.
func New(d Deps) http.Handler {
	if d.Version == "" {
		d.Version = Version()
	}
	if d.Tracing != nil && d.Propagator == nil {
		d.Propagator = telemetry.Propagator()
	}
	// The bad-token flood limit and authentication need only headers, so
	// they run as a request gate, before connect reads the message (see
	// headerGate): a caller without a valid token never gets a request
	// buffered.
	access := newAccessLog(d.Log)
	var gate []connect.Interceptor
	if d.Limiter != nil && d.RateLimits.AuthFailures.Rate > 0 {
		gate = append(gate, &authFailures{verifier: d.Verifier, counts: ratelimit.NewMemory(), limit: d.RateLimits.AuthFailures, hops: d.TrustedProxyHops})
	}
	gate = append(gate, auth.NewInterceptor(d.Verifier, isPublic, d.Log))
	// Interceptors run outermost first: the access log sees the final code,
	// errors are mapped before it sees them, and the checks of the request
	// itself run last before the handler.
	interceptors := []connect.Interceptor{access, rpc.NewErrorInterceptor(d.Log), userCapture{}}
	if d.Tracing != nil {
		// Outermost, so the access log line and the mapped error are
		// written inside the span (and the line carries its ids).
		interceptors = append([]connect.Interceptor{newTracing(d.Tracing, d.Propagator)}, interceptors...)
	}
	// Outside even the span: the 304 it answers for a matching
	// If-None-Match travels as an error, and is a success to log and trace.
	interceptors = append([]connect.Interceptor{httpCache{}}, interceptors...)
	if d.Limiter != nil {
		interceptors = append(interceptors, &rateLimiter{log: d.Log, limiter: d.Limiter, limits: d.RateLimits, plans: d.Plans, hops: d.TrustedProxyHops})
	}
	// Strings PostgreSQL cannot store answer invalid_argument naming the
	// field. Last, so an invalid call still counts against rate limits.
	interceptors = append(interceptors, rpc.NewValidationInterceptor())
	guards := newRequestGuards()
	options := []connect.HandlerOption{
		connect.WithRequestGate(headerGate(access, gate...)),
		connect.WithInterceptors(interceptors...),
		connect.WithRecover(func(ctx context.Context, spec connect.Spec, _ http.Header, p any) error {
			d.Log.ErrorContext(ctx, "panic in handler", "procedure", spec.Procedure, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			return connect.NewError(connect.CodeInternal, errors.New("internal error"))
		}),
		guards.option(),
		connect.WithCodec(rpc.BinaryCodec{}),
		connect.WithCompressMinBytes(1024),
	}
	for _, c := range rpc.NewJSONCodecs() {
		options = append(options, connect.WithCodec(c))
	}

	mux := http.NewServeMux()
	chatPath, chatHandler := parleyv1connect.NewChatServiceHandler(d.Chat, options...)
	mux.Handle(chatPath, rpc.GateFlushes(chatHandler))
	services := []string{parleyv1connect.ChatServiceName}
	if d.Attachment != nil {
		mux.Handle(parleyv1connect.NewAttachmentServiceHandler(d.Attachment, options...))
		services = append(services, parleyv1connect.AttachmentServiceName)
	}
	if d.Artifact != nil {
		mux.Handle(parleyv1connect.NewArtifactServiceHandler(d.Artifact, options...))
		services = append(services, parleyv1connect.ArtifactServiceName)
	}
	if d.Search != nil {
		mux.Handle(parleyv1connect.NewSearchServiceHandler(d.Search, options...))
		services = append(services, parleyv1connect.SearchServiceName)
	}

	if d.Agent != nil {
		mux.Handle(parleyv1connect.NewAgentServiceHandler(d.Agent, options...))
		services = append(services, parleyv1connect.AgentServiceName)
	}
	if d.User != nil {
		mux.Handle(parleyv1connect.NewUserServiceHandler(d.User, options...))
		services = append(services, parleyv1connect.UserServiceName)
	}
	if d.Billing != nil {
		mux.Handle(parleyv1connect.NewBillingServiceHandler(d.Billing, options...))
		services = append(services, parleyv1connect.BillingServiceName)
	}
	if d.Share != nil {
		mux.Handle(parleyv1connect.NewShareServiceHandler(d.Share, options...))
		services = append(services, parleyv1connect.ShareServiceName)
	}
	for _, routes := range []map[string]http.Handler{d.Tasks, d.Webhooks} {
		for path, h := range routes {
			pattern := "POST " + path
			if d.Tracing != nil {
				h = telemetry.Handler(pattern, h, d.Tracing, d.Propagator)
			}
			mux.Handle(pattern, h)
		}
	}
	for pattern, h := range d.Routes {
		mux.Handle(pattern, h)
	}

	// Health is listed too, so grpcurl can call it without proto files.
	reflector := grpcreflect.NewStaticReflector(append(services, grpchealth.HealthV1ServiceName)...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector, options...))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, options...))
	mux.Handle(grpchealth.NewHandler(&dbChecker{ping: d.Ping, services: services}, options...))

	mux.Handle("GET /health", healthHandler(d.Version))

	bodyTimeout := d.BodyTimeout
	if bodyTimeout <= 0 {
		bodyTimeout = DefaultBodyTimeout
	}
	return limitBodies(withTrace(withCORS(mux, d.AllowedOrigins)), guards.oneMessage, bodyTimeout)
}

// newTracing is otelconnect's interceptor on tp: a server span per RPC,
// unary or streaming, named by its procedure. The incoming traceparent is
// trusted as the span's parent (by default otelconnect would only link
// it): behind Cloud Run it is the front end's, and the request's log lines
// already name that trace. Metrics are left off, as Parley exports none.
func newTracing(tp trace.TracerProvider, prop propagation.TextMapPropagator) connect.Interceptor {
	i, err := otelconnect.NewInterceptor(otelconnect.WithTracerProvider(tp), otelconnect.WithPropagator(prop),
		otelconnect.WithTrustRemote(), otelconnect.WithoutMetrics())
	if err != nil {
		// Only metric instruments can fail, and metrics are off.
		panic(fmt.Sprintf("server: otelconnect: %v", err))
	}
	return i
}

func withCORS(h http.Handler, origins []string) http.Handler {
	if len(origins) == 0 {
		return h
	}
	return cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization", "If-None-Match"),
		ExposedHeaders: append(connectcors.ExposedHeaders(), "Etag",
			"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
			"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"),
		// Browsers cache the preflight for two hours (Chromium's maximum).
		MaxAge: 7200,
	}).Handler(h)
}

// withTrace puts the request's trace on its context so every log line
// written for it joins the trace in Cloud Logging.
func withTrace(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, traced(r))
	})
}

// traced is r with its trace on the context, if it names one. (Apart from
// withTrace so that streams, which last an answer, carry none of its
// locals.)
func traced(r *http.Request) *http.Request {
	if t, ok := logging.TraceFromHeaders(r.Header.Get("traceparent"), r.Header.Get("X-Cloud-Trace-Context")); ok {
		return r.WithContext(logging.WithTrace(r.Context(), t))
	}
	return r
}

// dbChecker answers gRPC health checks from a database ping.
type dbChecker struct {
	ping     func(context.Context) error
	services []string
}

func (c *dbChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	known := req.Service == ""
	for _, s := range c.services {
		known = known || s == req.Service
	}
	if !known {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q", req.Service))
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if c.ping != nil && c.ping(ctx) != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}

// NewHTTPServer returns an http.Server for h that speaks HTTP/1.1 and
// unencrypted HTTP/2 (h2c: Cloud Run's --use-http2 and gRPC clients use it).
//
// Slow clients: an HTTP/1.1 request must send its headers within
// ReadHeaderTimeout; an h2c connection gets 10s for its preface (Go's
// fixed value) and is closed after IdleTimeout with no request in flight,
// which also bounds a header block sent a frame at a time (Go has no
// per-stream header timeout). Bodies are bounded per request by New's
// handler (limitBodies). There is no whole-request read or write timeout:
// ReadTimeout would cut the request side of reflection's streams and turn
// a slow body into an error without a useful code, and WriteTimeout would
// cut every answer stream.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
