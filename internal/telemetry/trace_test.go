package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/config"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/llm/llmtest"
	"github.com/parleyhq/parley/internal/logging"
	"github.com/parleyhq/parley/internal/telemetry"
)

// The incoming trace every test sends, as Cloud Run's front end would.
const (
	incomingTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	incomingSpan  = "00f067aa0ba902b7"
	traceparent   = "00-" + incomingTrace + "-" + incomingSpan + "-01"
	fakeModel     = "fake-model"
	sendMessage   = "parley.v1.ChatService/SendMessage"
)

// TestAnswerTrace: one streamed answer, through the service as app.New
// builds it and the real OpenAI client against the fake upstream, is one
// trace: the SendMessage server span is the child of the incoming
// traceparent, the model call (with its model and the usage the upstream
// reported) and the database queries are beneath it, nothing of the
// answer starts a trace of its own, and the RPC's log lines carry the
// span's ids.
func TestAnswerTrace(t *testing.T) {
	t.Parallel()
	exporter := tracetest.NewInMemoryExporter()
	tp := telemetry.NewProvider(sdktrace.NewSimpleSpanProcessor(exporter), config.TracingConfig{SampleRatio: 1}, "test")
	// Registered first, so it runs after the server has stopped.
	t.Cleanup(func() { tp.Shutdown(context.Background()) }) //nolint:errcheck // in memory
	logs := &lockedBuffer{}
	fake := llmtest.NewServer(t, llmtest.Usage(12, 34))
	provider := llm.NewOpenAI(llm.OpenAIConfig{BaseURL: fake.URL, APIKey: "sk-test", IdleTimeout: 5 * time.Second})
	env := apitest.New(t, apitest.Options{
		Provider: provider, Models: []string{fakeModel}, TracerProvider: tp,
		Log: logging.New(logs, logging.Options{Format: "json"}),
	})
	converse(t, env)

	var server tracetest.SpanStub
	spans := waitFor(t, exporter, func(spans tracetest.SpanStubs) bool {
		var ok bool
		server, ok = find(spans, sendMessage)
		return ok
	})
	if server.SpanKind != trace.SpanKindServer {
		t.Errorf("%s is a %s span, want server", sendMessage, server.SpanKind)
	}
	if got := server.Parent; got.TraceID().String() != incomingTrace || got.SpanID().String() != incomingSpan || !got.IsRemote() {
		t.Errorf("%s's parent is %s/%s (remote %v), want the incoming %s/%s", sendMessage, got.TraceID(), got.SpanID(), got.IsRemote(), incomingTrace, incomingSpan)
	}
	create, ok := find(spans, "parley.v1.ChatService/CreateConversation")
	if !ok || create.Parent.IsValid() {
		t.Errorf("CreateConversation, sent without a traceparent, should be a root span: found %v, parent %v", ok, create.Parent)
	}

	model, ok := find(spans, "chat "+fakeModel)
	if !ok {
		t.Fatalf("no model call span among %v", names(spans))
	}
	if model.Parent.SpanID() != server.SpanContext.SpanID() {
		t.Errorf("the model call's parent is %s, want the RPC's span %s", model.Parent.SpanID(), server.SpanContext.SpanID())
	}
	attrs := attributes(model)
	for k, want := range map[string]string{
		"gen_ai.request.model": fakeModel, "gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": "34",
	} {
		if attrs[k] != want {
			t.Errorf("model span %s = %q, want %q", k, attrs[k], want)
		}
	}

	// Every span of the answer's trace descends from the RPC's span: the
	// generation runs on a context of its own, yet carries it.
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
	}
	var queries int
	for _, s := range spans {
		if s.SpanContext.TraceID() != server.SpanContext.TraceID() || s.SpanContext.SpanID() == server.SpanContext.SpanID() {
			continue
		}
		if !descends(s, server, byID) {
			t.Errorf("span %q is in the answer's trace but not beneath its RPC", s.Name)
		}
		if attributes(s)["db.system.name"] == "postgresql" {
			queries++
		}
	}
	if queries == 0 {
		t.Errorf("no database span beneath the RPC among %v", names(spans))
	}

	// The access log line of the RPC names its span, so logs and traces join.
	line := logLine(t, logs, sendMessage)
	if line["logging.googleapis.com/trace"] != incomingTrace || line["logging.googleapis.com/spanId"] != server.SpanContext.SpanID().String() ||
		line["logging.googleapis.com/trace_sampled"] != true {
		t.Errorf("access log line %v does not name the RPC's span %s of trace %s", line, server.SpanContext.SpanID(), incomingTrace)
	}
}

// TestTracingOff: without an endpoint or a provider nothing is traced,
// not even through OpenTelemetry's global provider (which the
// instrumentation libraries fall back to), and log lines still carry the
// trace the request's traceparent named, as before tracing existed.
func TestTracingOff(t *testing.T) {
	// Not parallel: it replaces the global provider.
	exporter := tracetest.NewInMemoryExporter()
	global := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	previous := otel.GetTracerProvider()
	otel.SetTracerProvider(global)
	t.Cleanup(func() {
		otel.SetTracerProvider(previous)
		global.Shutdown(context.Background()) //nolint:errcheck // in memory
	})
	logs := &lockedBuffer{}
	fake := llmtest.NewServer(t)
	provider := llm.NewOpenAI(llm.OpenAIConfig{BaseURL: fake.URL, APIKey: "sk-test", IdleTimeout: 5 * time.Second})
	env := apitest.New(t, apitest.Options{Provider: provider, Models: []string{fakeModel}, Log: logging.New(logs, logging.Options{Format: "json"})})
	converse(t, env)
	env.Stop()

	if spans := exporter.GetSpans(); len(spans) > 0 {
		t.Errorf("tracing off recorded %d spans: %v", len(spans), names(spans))
	}
	line := logLine(t, logs, sendMessage)
	if line["logging.googleapis.com/trace"] != incomingTrace || line["logging.googleapis.com/spanId"] != incomingSpan {
		t.Errorf("access log line %v does not carry the incoming trace %s/%s", line, incomingTrace, incomingSpan)
	}
}

// converse creates a conversation and streams one answer in it, sending
// the incoming traceparent with SendMessage.
func converse(t *testing.T, env *apitest.Env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := env.ChatClient(t, "connect+proto", uuid.New())
	conv, err := c.CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{Title: "Traced"}))
	if err != nil {
		t.Fatal(err)
	}
	req := connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: conv.Msg.GetConversation().GetId(), Content: "Hello", ClientMessageId: "traced-1"})
	req.Header().Set("traceparent", traceparent)
	stream, err := c.SendMessage(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for stream.Receive() {
		text.WriteString(stream.Msg().GetDelta().GetText())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(llmtest.DefaultChunks, ""); text.String() != want {
		t.Fatalf("answer %q, want %q", text.String(), want)
	}
}

// waitFor returns the exported spans once done says they are complete
// (the RPC's span ends after its last message reached the client).
func waitFor(t *testing.T, exporter *tracetest.InMemoryExporter, done func(tracetest.SpanStubs) bool) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans := exporter.GetSpans()
		if done(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans never complete: %v", names(spans))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func find(spans tracetest.SpanStubs, name string) (tracetest.SpanStub, bool) {
	for _, s := range spans {
		if s.Name == name {
			return s, true
		}
	}
	return tracetest.SpanStub{}, false
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func attributes(s tracetest.SpanStub) map[string]string {
	out := map[string]string{}
	for _, a := range s.Attributes {
		out[string(a.Key)] = a.Value.Emit()
	}
	return out
}

// descends reports whether s is beneath ancestor, following exported parents.
func descends(s, ancestor tracetest.SpanStub, byID map[trace.SpanID]tracetest.SpanStub) bool {
	for range len(byID) {
		if s.Parent.SpanID() == ancestor.SpanContext.SpanID() {
			return true
		}
		parent, ok := byID[s.Parent.SpanID()]
		if !ok {
			return false
		}
		s = parent
	}
	return false
}

// logLine returns the access log line of procedure.
func logLine(t *testing.T, logs *lockedBuffer, procedure string) map[string]any {
	t.Helper()
	for _, raw := range strings.Split(logs.String(), "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(raw), &line) == nil && line["message"] == "rpc" && line["procedure"] == "/"+procedure {
			return line
		}
	}
	t.Fatalf("no access log line for %s in:\n%s", procedure, logs.String())
	return nil
}

// lockedBuffer is a bytes.Buffer the server's goroutines may write to
// while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
