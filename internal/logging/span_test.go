package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// TestActiveSpanWins: with tracing on, a record logged under a span
// carries that span's trace and span id, not the incoming header's span,
// so the line sits under the span in Cloud Trace.
func TestActiveSpanWins(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := New(&buf, Options{Format: "json", Level: slog.LevelInfo})
	header, _ := TraceFromHeaders("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "")
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("1111111111111111")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID})
	ctx := trace.ContextWithSpanContext(WithTrace(context.Background(), header), sc)
	log.InfoContext(ctx, "rpc")
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"logging.googleapis.com/trace":         "4bf92f3577b34da6a3ce929d0e0e4736",
		"logging.googleapis.com/spanId":        "1111111111111111",
		"logging.googleapis.com/trace_sampled": false,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
