// Package telemetry is Parley's OpenTelemetry tracing: the tracer provider
// that exports spans over OTLP when the configuration names an endpoint,
// and the decorators that put spans around what the domain packages do
// (model calls, tool calls, agent steps, webhook deliveries) without the
// domain packages importing OpenTelemetry.
//
// Tracing is off unless configured: internal/app then installs none of
// this, so the service pays nothing for it. When it is on, every span
// goes through one trace.TracerProvider, passed explicitly (never the
// global one), so tests run the production wiring with an in-memory
// exporter.
package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"

	"github.com/parleyhq/parley/internal/config"
)

// instrumentation names Parley's own spans (as opposed to those of
// otelconnect, otelpgx and redisotel).
const instrumentation = "github.com/parleyhq/parley"

// New returns a tracer provider that samples by cfg.SampleRatio (parent
// based) and exports in batches over OTLP/HTTP (protobuf) to
// cfg.Endpoint, with cfg.Headers. The caller shuts it down, which flushes
// what is buffered.
//
// Everything the exporter is told comes from cfg, which internal/config
// read; the SDK still honours OTEL_BSP_* and OTEL_RESOURCE_ATTRIBUTES.
// The exporter is otlptrace's on otlpHTTP (otlp.go), not otlptracehttp,
// whose configuration packages link gRPC into the binary.
func New(ctx context.Context, cfg config.TracingConfig, version string) (*sdktrace.TracerProvider, error) {
	exporter, err := otlptrace.New(ctx, newOTLPHTTP(cfg.Endpoint, cfg.Headers))
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
	}
	return NewProvider(sdktrace.NewBatchSpanProcessor(exporter), cfg, version), nil
}

// NewProvider returns the tracer provider New builds, on any span
// processor: tests pass a synchronous one over tracetest's in-memory
// exporter, so they sample and name spans exactly as production does.
func NewProvider(processor sdktrace.SpanProcessor, cfg config.TracingConfig, version string) *sdktrace.TracerProvider {
	name := cfg.ServiceName
	if name == "" {
		name = "parley"
	}
	// Schemaless, so it merges with the SDK's own resource (which carries
	// OTEL_RESOURCE_ATTRIBUTES) whatever semconv version that one uses.
	res := resource.NewSchemaless(
		attribute.String("service.name", name),
		attribute.String("service.version", version),
	)
	return sdktrace.NewTracerProvider(
		sdktrace.WithSpanProcessor(processor),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
}

// Propagator reads and writes W3C traceparent and baggage headers: what
// Cloud Run's front end and other services send.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// ChildrenOnly returns a provider whose spans are only recorded inside a
// trace: a span started on a context without a recording span is not
// created at all. Database and Redis clients get it, so the queries and
// commands of background work (River's polling, sweeps, checkpoints)
// do not each become a trace of their own, while those of an RPC, a
// model call or an agent step appear beneath it.
func ChildrenOnly(tp trace.TracerProvider) trace.TracerProvider {
	return childrenOnlyProvider{next: tp}
}

type childrenOnlyProvider struct {
	embedded.TracerProvider
	next trace.TracerProvider
}

func (p childrenOnlyProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return childrenOnlyTracer{next: p.next.Tracer(name, opts...)}
}

type childrenOnlyTracer struct {
	embedded.Tracer
	next trace.Tracer
}

func (t childrenOnlyTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if parent := trace.SpanFromContext(ctx); !parent.IsRecording() {
		// The caller gets the context's own span (a no-op one when there
		// is none) and ends it, which does nothing to a span that is not
		// recording.
		return ctx, parent
	}
	return t.next.Start(ctx, name, opts...)
}

// Carry puts the span of the request's context onto run's, so work that
// outlives the request on a context of its own (an answer's generation)
// is traced beneath the request that started it. It is
// chat.GeneratorConfig.Carry when tracing is on.
func Carry(request, run context.Context) context.Context {
	if span := trace.SpanFromContext(request); span.SpanContext().IsValid() {
		return trace.ContextWithSpan(run, span)
	}
	return run
}
