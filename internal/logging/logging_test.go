package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestJSONCloudLogging(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := New(&buf, Options{Format: "json", Level: slog.LevelDebug, Project: "proj"})
	trace, ok := TraceFromHeaders("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "")
	if !ok {
		t.Fatal("traceparent not parsed")
	}
	log.WarnContext(WithTrace(context.Background(), trace), "slow", "n", 1)
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not one JSON object: %q: %v", buf.String(), err)
	}
	want := map[string]any{
		"severity":                             "WARNING",
		"message":                              "slow",
		"logging.googleapis.com/trace":         "projects/proj/traces/4bf92f3577b34da6a3ce929d0e0e4736",
		"logging.googleapis.com/spanId":        "00f067aa0ba902b7",
		"logging.googleapis.com/trace_sampled": true,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestTraceFromHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, traceparent, cloud string
		want                     Trace
		ok                       bool
	}{
		{"OKTraceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "", Trace{"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", false}, true},
		{"OKCloudTrace", "", "105445aa7843bc8bf206b12000100000/1;o=1", Trace{"105445aa7843bc8bf206b12000100000", "1", true}, true},
		{"ErrGarbage", "zz", "nope", Trace{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := TraceFromHeaders(tt.traceparent, tt.cloud)
			if ok != tt.ok || got != tt.want {
				t.Errorf("got %+v %v, want %+v %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
