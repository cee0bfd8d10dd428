package redisconn_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/parleyhq/parley/internal/redisconn"
	"github.com/parleyhq/parley/internal/redistest"
)

// TestWithTracing: a traced client's command is a span beneath the
// caller's, named by the command and without its arguments (which carry
// answers' text).
func TestWithTracing(t *testing.T) {
	t.Parallel()
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	t.Cleanup(func() { tp.Shutdown(t.Context()) }) //nolint:errcheck // in memory
	c, err := redisconn.NewClient(redistest.URL(t), redisconn.WithTracing(tp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, span := tp.Tracer("test").Start(t.Context(), "parent")
	err = c.Set(ctx, redistest.Prefix(t)+"traced", "secret-text", 0).Err()
	span.End()
	if err != nil {
		t.Fatal(err)
	}
	spans := exporter.GetSpans()
	var parent, set *tracetest.SpanStub
	for i := range spans {
		switch spans[i].Name {
		case "parent":
			parent = &spans[i]
		case "set":
			set = &spans[i]
		}
	}
	if parent == nil || set == nil {
		t.Fatalf("spans %v; want parent and set", names(spans))
	}
	if set.Parent.SpanID() != parent.SpanContext.SpanID() {
		t.Errorf("set's parent is %s, want %s", set.Parent.SpanID(), parent.SpanContext.SpanID())
	}
	for _, a := range set.Attributes {
		if strings.Contains(a.Value.Emit(), "secret-text") {
			t.Errorf("attribute %s = %q carries the command's argument", a.Key, a.Value.Emit())
		}
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// TestSetLogger: go-redis's own messages become JSON log records.
func TestSetLogger(t *testing.T) {
	var buf bytes.Buffer
	redisconn.SetLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(func() { redisconn.SetLogger(slog.New(slog.DiscardHandler)) })
	client, err := redisconn.NewClient("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = client.Ping(ctx).Err() // nothing listens: go-redis logs the failed dials
	line, _, _ := strings.Cut(buf.String(), "\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["msg"] != "redis client" || rec["level"] != "WARN" {
		t.Fatalf("go-redis logged %q, want a JSON warn record", buf.String())
	}
}
