package telemetry_test

import (
	"bytes"
	"context"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/parleyhq/parley/internal/config"
	"github.com/parleyhq/parley/internal/telemetry"
)

// TestExportOnShutdown: the production provider posts its spans as
// OTLP/HTTP protobuf to the configured URL, path and headers as given,
// and Shutdown flushes the batch still buffered (what App.Close relies on).
func TestExportOnShutdown(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		requests []*http.Request
		bodies   [][]byte
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		requests, bodies = append(requests, r), append(bodies, body)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	tp, err := telemetry.New(t.Context(), config.TracingConfig{
		Endpoint: collector.URL + "/custom/v1/traces", Headers: map[string]string{"x-api-key": "k"}, ServiceName: "parley-test", SampleRatio: 1,
	}, "v1")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("test").Start(context.Background(), "buffered")
	span.End()
	if err := tp.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(requests) != 1 {
		t.Fatalf("the collector got %d requests; want the one batch", len(requests))
	}
	r := requests[0]
	if r.URL.Path != "/custom/v1/traces" || r.Header.Get("x-api-key") != "k" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		t.Errorf("export went to %s with key %q, type %q", r.URL.Path, r.Header.Get("x-api-key"), r.Header.Get("Content-Type"))
	}
	for _, want := range []string{"buffered", "parley-test"} {
		if !contains(bodies[0], want) {
			t.Errorf("the export does not hold %q", want)
		}
	}
	// The body is an ExportTraceServiceRequest as a collector decodes it.
	var export coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(bodies[0], &export); err != nil {
		t.Fatalf("the body is not an ExportTraceServiceRequest: %v", err)
	}
	rs := export.GetResourceSpans()
	if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || rs[0].GetScopeSpans()[0].GetSpans()[0].GetName() != "buffered" {
		t.Errorf("decoded export: %v", &export)
	}
}

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
