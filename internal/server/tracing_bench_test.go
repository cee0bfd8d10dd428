package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/config"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/server"
	"github.com/parleyhq/parley/internal/telemetry"
)

// BenchmarkUnaryTracing is one unary RPC (gRPC health's Check over the
// Connect protocol, through every interceptor and the access log) served
// in-process: with tracing off (what production runs without an OTLP
// endpoint: no tracing code installed), with otelconnect on a no-op
// provider, and with the SDK recording every span (exported nowhere).
// Off and Noop should cost the same; SDK is the price of tracing on.
func BenchmarkUnaryTracing(b *testing.B) {
	key, err := auth.LoadOrCreateDevKey(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	verifier, err := auth.NewStaticVerifier(auth.Config{Issuer: apitest.Issuer}, key.JWKS())
	if err != nil {
		b.Fatal(err)
	}
	defer verifier.Close()
	sdk := telemetry.NewProvider(sdktrace.NewSimpleSpanProcessor(tracetest.NewNoopExporter()), config.TracingConfig{SampleRatio: 1}, "bench")
	defer sdk.Shutdown(context.Background()) //nolint:errcheck // exports nowhere
	for _, bc := range []struct {
		name    string
		tracing trace.TracerProvider
	}{
		{"Off", nil},
		{"Noop", noop.NewTracerProvider()},
		{"SDK", sdk},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := server.New(server.Deps{
				Log: slog.New(slog.DiscardHandler), Verifier: verifier, Chat: parleyv1connect.UnimplementedChatServiceHandler{},
				Ping: func(context.Context) error { return nil }, Tracing: bc.tracing,
			})
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/grpc.health.v1.Health/Check", strings.NewReader("{}"))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
