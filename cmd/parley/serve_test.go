package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm/llmtest"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/store"
)

// fakeSupabase serves a JWKS the way Supabase Auth publishes it.
func fakeSupabase(tb testing.TB) (url string, key *auth.DevKey) {
	tb.Helper()
	key, err := auth.LoadOrCreateDevKey(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/auth/v1/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(key.JWKS())
	}))
	tb.Cleanup(srv.Close)
	return srv.URL, key
}

func TestServe(t *testing.T) {
	t.Parallel()
	supabaseURL, key := fakeSupabase(t)
	s := start(t, map[string]string{
		"PORT":            "0",
		"HOST":            "127.0.0.1",
		"DATABASE_URL":    pgtest.URL(t),
		"SUPABASE_URL":    supabaseURL,
		"OPENAI_BASE_URL": llmtest.NewServer(t).URL,
	}, "serve")

	res, err := http.Get(s.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var health map[string]string
	json.NewDecoder(res.Body).Decode(&health)
	res.Body.Close()
	if health["status"] != "ok" {
		t.Fatalf("health = %v", health)
	}

	user := uuid.New()
	token, err := key.Sign(supabaseURL+"/auth/v1", user, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	traced := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			return next(ctx, req)
		}
	})
	for _, protocol := range apitest.Protocols {
		c := parleyv1connect.NewChatServiceClient(apitest.HTTPClientFor(protocol), s.URL,
			append(apitest.ClientOptions(protocol), connect.WithInterceptors(apitest.Bearer(token), traced))...)
		if _, err := c.CreateConversation(context.Background(), connect.NewRequest(&parleyv1.CreateConversationRequest{Title: protocol})); err != nil {
			t.Fatalf("%s: %v", protocol, err)
		}
	}

	// Logs are Cloud Logging JSON, one object per line, with an access line.
	var sawAccess bool
	for _, line := range strings.Split(strings.TrimSpace(s.Stdout.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if _, ok := m["severity"]; !ok {
			t.Errorf("log line without severity: %q", line)
		}
		if m["message"] == "rpc" && m["user_id"] == user.String() {
			sawAccess = true
			if m["logging.googleapis.com/trace"] != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Errorf("access line without the request's trace: %q", line)
			}
		}
		if strings.Contains(line, token) {
			t.Errorf("log line leaks the token: %q", line)
		}
	}
	if !sawAccess {
		t.Errorf("no access log line for the user in:\n%s", s.Stdout)
	}

	// SIGTERM: the server stops cleanly within the grace period.
	begin := time.Now()
	if err := s.Stop(t); err != nil {
		t.Fatalf("run after SIGTERM: %v", err)
	}
	if d := time.Since(begin); d > 8*time.Second {
		t.Errorf("shutdown took %v, want under 8s", d)
	}
}

func TestServeUnauthenticatedWhileJWKSDown(t *testing.T) {
	t.Parallel()
	// Nothing listens at this Supabase URL: the server must still start and
	// answer, refusing tokens rather than hanging or crashing.
	s := start(t, map[string]string{
		"PORT": "0", "HOST": "127.0.0.1",
		"DATABASE_URL":    pgtest.URL(t),
		"SUPABASE_URL":    "http://127.0.0.1:1",
		"OPENAI_BASE_URL": llmtest.NewServer(t).URL,
	}, "serve")
	c := parleyv1connect.NewChatServiceClient(http.DefaultClient, s.URL, connect.WithInterceptors(apitest.Bearer("x.y.z")))
	_, err := c.ListConversations(context.Background(), connect.NewRequest(&parleyv1.ListConversationsRequest{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("err = %v, want unauthenticated", err)
	}
}

// TestServeSIGTERMMidStream: on SIGTERM the server saves the partial answer
// as interrupted, ends the stream with unavailable and exits in time.
func TestServeSIGTERMMidStream(t *testing.T) {
	t.Parallel()
	supabaseURL, key := fakeSupabase(t)
	fake := llmtest.NewServer(t, llmtest.Hold())
	dbURL := pgtest.URL(t)
	s := start(t, map[string]string{
		"PORT": "0", "HOST": "127.0.0.1",
		"DATABASE_URL":     dbURL,
		"SUPABASE_URL":     supabaseURL,
		"OPENAI_BASE_URL":  fake.URL,
		"PARLEY_MODELS":    "fake-model",
		"SHUTDOWN_TIMEOUT": "3s",
	}, "serve")
	user := uuid.New()
	token, err := key.Sign(supabaseURL+"/auth/v1", user, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := parleyv1connect.NewChatServiceClient(http.DefaultClient, s.URL, connect.WithInterceptors(apitest.Bearer(token)))
	// A titled conversation: no title request competes for the held chunks.
	conv, err := c.CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{Title: "sigterm"}))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := c.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: conv.Msg.Conversation.Id, Content: "hi"}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() || stream.Msg().GetStarted() == nil {
		t.Fatalf("no started event: %v", stream.Err())
	}
	answerID := stream.Msg().GetStarted().AssistantMessageId
	fake.Release(1)
	if !stream.Receive() || stream.Msg().GetDelta() == nil {
		t.Fatalf("no delta: %v", stream.Err())
	}
	partial := stream.Msg().GetDelta().Text

	begin := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(t) }()
	for stream.Receive() {
	}
	if connect.CodeOf(stream.Err()) != connect.CodeUnavailable {
		t.Errorf("stream ended with %v, want unavailable", stream.Err())
	}
	if err := <-stopped; err != nil {
		t.Fatalf("run after SIGTERM: %v", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("shutdown took %v with SHUTDOWN_TIMEOUT=3s", d)
	}
	st := store.New(pgtest.Pool(t))
	m, err := st.GetMessage(ctx, user, uuid.MustParse(answerID))
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != chat.StatusInterrupted || m.Content != partial {
		t.Errorf("after SIGTERM the answer is %q (%s), want %q interrupted", m.Content, m.Status, partial)
	}
}
