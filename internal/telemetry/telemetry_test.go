package telemetry_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/config"
	"github.com/parleyhq/parley/internal/telemetry"
)

func newRecorder(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exporter := tracetest.NewInMemoryExporter()
	tp := telemetry.NewProvider(sdktrace.NewSimpleSpanProcessor(exporter), config.TracingConfig{SampleRatio: 1}, "test")
	t.Cleanup(func() { tp.Shutdown(context.Background()) }) //nolint:errcheck // in memory
	return tp, exporter
}

// TestChildrenOnly: a client library's span is recorded inside a trace
// and not at all outside one, and ending the span it got outside one
// never ends the caller's.
func TestChildrenOnly(t *testing.T) {
	t.Parallel()
	tp, exporter := newRecorder(t)
	clients := telemetry.ChildrenOnly(tp).Tracer("client")

	_, orphan := clients.Start(context.Background(), "orphan")
	orphan.End()
	if spans := exporter.GetSpans(); len(spans) != 0 {
		t.Fatalf("a span without a parent was recorded: %v", names(spans))
	}

	ctx, parent := tp.Tracer("test").Start(context.Background(), "parent")
	_, child := clients.Start(ctx, "child")
	child.End()
	parent.End()
	spans := exporter.GetSpans()
	if len(spans) != 2 || spans[0].Name != "child" || spans[0].Parent.SpanID() != spans[1].SpanContext.SpanID() {
		t.Fatalf("spans %v; want child beneath parent", names(spans))
	}

	// A trace sampled out records nothing of its clients either.
	exporter.Reset()
	never := telemetry.NewProvider(sdktrace.NewSimpleSpanProcessor(exporter), config.TracingConfig{SampleRatio: 0}, "test")
	defer never.Shutdown(context.Background()) //nolint:errcheck // in memory
	ctx, dropped := never.Tracer("test").Start(context.Background(), "dropped")
	_, child = telemetry.ChildrenOnly(never).Tracer("client").Start(ctx, "child")
	child.End()
	dropped.End()
	if spans := exporter.GetSpans(); len(spans) != 0 {
		t.Fatalf("a trace sampled out recorded %v", names(spans))
	}
}

func TestQueryName(t *testing.T) {
	t.Parallel()
	for stmt, want := range map[string]string{
		"-- name: LoadContext :many\nWITH branch AS (SELECT 1)": "LoadContext",
		"\n-- name: FinishMessage :one\nUPDATE messages":        "FinishMessage",
		"select 1":                    "SELECT",
		"-- a comment\ninsert into x": "INSERT",
	} {
		if got := telemetry.QueryName(context.Background(), stmt); got != want {
			t.Errorf("QueryName(%q) = %q, want %q", stmt, got, want)
		}
	}
}

// TestModelSpan: a call that fails ends its span with the error, one
// closed early ends it too, and one read to its end carries the usage.
func TestModelSpan(t *testing.T) {
	t.Parallel()
	tp, exporter := newRecorder(t)
	failing := telemetry.Provider(fakeProvider{err: errors.New("upstream down")}, tp)
	if _, err := failing.Stream(context.Background(), chat.ModelRequest{Model: "m"}); err == nil {
		t.Fatal("Stream succeeded")
	}
	ok := telemetry.Provider(fakeProvider{}, tp)
	s, err := ok.Stream(context.Background(), chat.ModelRequest{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := s.Recv(); err != nil {
			break
		}
	}
	s.Close()
	closed, err := ok.Stream(context.Background(), chat.ModelRequest{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	spans := exporter.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("spans %v; want one per call", names(spans))
	}
	if spans[0].Status.Code != codes.Error {
		t.Errorf("failed call's status = %v, want error", spans[0].Status)
	}
	if got := attributes(spans[1]); got["gen_ai.usage.output_tokens"] != "7" || got["gen_ai.response.finish_reasons"] != `["stop"]` {
		t.Errorf("finished call's attributes = %v", got)
	}
	if _, ok := attributes(spans[2])["gen_ai.usage.output_tokens"]; ok {
		t.Error("a call closed early reports usage the provider never gave")
	}
}

type fakeProvider struct{ err error }

func (p fakeProvider) Stream(context.Context, chat.ModelRequest) (chat.ModelStream, error) {
	if p.err != nil {
		return nil, p.err
	}
	return &fakeStream{}, nil
}

type fakeStream struct{ sent bool }

func (s *fakeStream) Recv() (chat.Delta, error) {
	if s.sent {
		return chat.Delta{}, io.EOF
	}
	s.sent = true
	return chat.Delta{Text: "hi"}, nil
}
func (s *fakeStream) Usage() chat.Usage    { return chat.Usage{PromptTokens: 3, CompletionTokens: 7} }
func (s *fakeStream) FinishReason() string { return "stop" }
func (s *fakeStream) Close() error         { return nil }
