package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/rpc"
	"github.com/parleyhq/parley/internal/store"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	res, err := http.Get(env.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || body["status"] != "ok" || body["version"] == "" {
		t.Errorf("GET /health = %d %v", res.StatusCode, body)
	}
}

func TestGRPCHealth(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		env := apitest.New(t, apitest.Options{})
		client := grpchealth.NewClient(env.HTTPClient, env.URL, connect.WithGRPC())
		res, err := client.Check(context.Background(), &grpchealth.CheckRequest{Service: parleyv1connect.ChatServiceName})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != grpchealth.StatusServing {
			t.Errorf("status = %v, want serving", res.Status)
		}
	})
	t.Run("NotServingWithoutDatabase", func(t *testing.T) {
		t.Parallel()
		// A real pool pointed at a port where nothing listens.
		down, err := store.Open(context.Background(), "postgres://postgres@127.0.0.1:1/parley?sslmode=disable&connect_timeout=1", store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(down.Close)
		env := apitest.New(t, apitest.Options{Ping: down.Ping})
		client := grpchealth.NewClient(env.HTTPClient, env.URL, connect.WithGRPC())
		res, err := client.Check(context.Background(), &grpchealth.CheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != grpchealth.StatusNotServing {
			t.Errorf("status = %v, want not_serving", res.Status)
		}
	})
}

func TestReflection(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	client := grpcreflect.NewClient(env.HTTPClient, env.URL, connect.WithGRPC())
	stream := client.NewStream(context.Background())
	defer stream.Close()
	names, err := stream.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, parleyv1connect.ChatServiceName) {
		t.Errorf("reflection lists %v, want %s among them", names, parleyv1connect.ChatServiceName)
	}
	files, err := stream.FileContainingSymbol(parleyv1connect.ChatServiceName)
	if err != nil || len(files) == 0 {
		t.Errorf("FileContainingSymbol: %v, %d files", err, len(files))
	}
}

// panicky panics in one RPC to prove the process survives and answers internal.
type panicky struct{ *rpc.ChatHandler }

func (panicky) GetConversation(context.Context, *connect.Request[parleyv1.GetConversationRequest]) (*connect.Response[parleyv1.GetConversationResponse], error) {
	panic("boom")
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestPanicBecomesInternal(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	env := apitest.New(t, apitest.Options{
		Chat: func(h *rpc.ChatHandler) parleyv1connect.ChatServiceHandler { return panicky{h} },
		Log:  slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	c := env.ChatClient(t, "connect+json", uuid.New())
	_, err := c.GetConversation(context.Background(), connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: uuid.NewString()}))
	if connect.CodeOf(err) != connect.CodeInternal || strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v, want a bare internal error", err)
	}
	// The server lives on.
	if _, err := c.ListConversations(context.Background(), connect.NewRequest(&parleyv1.ListConversationsRequest{})); err != nil {
		t.Fatalf("after the panic: %v", err)
	}
	if out := logs.String(); !strings.Contains(out, "panic in handler") || !strings.Contains(out, "boom") || !strings.Contains(out, "goroutine") {
		t.Errorf("panic not logged with its stack: %s", out)
	}
}

func TestMessageSizeLimit(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			c := env.ChatClient(t, protocol, uuid.New())
			_, err := c.CreateConversation(context.Background(), connect.NewRequest(&parleyv1.CreateConversationRequest{
				SystemPrompt: strings.Repeat("x", 11<<20),
			}))
			if connect.CodeOf(err) != connect.CodeResourceExhausted {
				t.Fatalf("11 MiB message: %v, want resource_exhausted", err)
			}
		})
	}
}

func TestGzip(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	user := uuid.New()
	c := parleyv1connect.NewChatServiceClient(env.HTTPClient, env.URL,
		connect.WithSendGzip(), connect.WithInterceptors(apitest.Bearer(env.Token(t, user))))
	prompt := strings.Repeat("Answer in the voice of a pirate. ", 200)
	res, err := c.CreateConversation(context.Background(), connect.NewRequest(&parleyv1.CreateConversationRequest{SystemPrompt: prompt}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Msg.Conversation.SystemPrompt != prompt {
		t.Error("gzip request lost content")
	}
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	env := apitest.New(t, apitest.Options{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	user := uuid.New()
	c := env.ChatClient(t, "grpc", user)
	create := &parleyv1.CreateConversationRequest{Title: "secret title"}
	if _, err := c.CreateConversation(context.Background(), connect.NewRequest(create)); err != nil {
		t.Fatal(err)
	}
	token := env.Token(t, user)
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "rpc" {
			line = m
		}
		if strings.Contains(l, "secret title") || strings.Contains(l, token) {
			t.Errorf("log line leaks content or token: %s", l)
		}
	}
	want := map[string]any{
		"procedure": parleyv1connect.ChatServiceCreateConversationProcedure,
		"protocol":  "grpc",
		"code":      "ok",
		"user_id":   user.String(),
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("access log %s = %v, want %v (line %v)", k, line[k], v, line)
		}
	}
	if _, ok := line["duration"]; !ok {
		t.Errorf("access log has no duration: %v", line)
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{AllowedOrigins: []string{"https://app.example.com"}})
	preflight := func(origin string) http.Header {
		req, err := http.NewRequest(http.MethodOptions, env.URL+parleyv1connect.ChatServiceListConversationsProcedure, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,connect-protocol-version,content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.Header
	}
	t.Run("OK", func(t *testing.T) {
		h := preflight("https://app.example.com")
		if got := h.Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
			t.Errorf("Allow-Origin = %q", got)
		}
		if got := strings.ToLower(h.Get("Access-Control-Allow-Headers")); !strings.Contains(got, "authorization") {
			t.Errorf("Allow-Headers = %q, want authorization", got)
		}
	})
	t.Run("ErrUnlistedOrigin", func(t *testing.T) {
		if got := preflight("https://evil.example").Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("unlisted origin allowed: %q", got)
		}
	})
}
