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
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/chat"
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
		for _, service := range []string{parleyv1connect.ChatServiceName, parleyv1connect.ArtifactServiceName, parleyv1connect.SearchServiceName} {
			res, err := client.Check(context.Background(), &grpchealth.CheckRequest{Service: service})
			if err != nil {
				t.Fatalf("%s: %v", service, err)
			}
			if res.Status != grpchealth.StatusServing {
				t.Errorf("%s: status = %v, want serving", service, res.Status)
			}
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
	for _, service := range []protoreflect.FullName{parleyv1connect.ChatServiceName, parleyv1connect.ArtifactServiceName, parleyv1connect.SearchServiceName} {
		if !slices.Contains(names, service) {
			t.Errorf("reflection lists %v, want %s among them", names, service)
		}
		files, err := stream.FileContainingSymbol(service)
		if err != nil || len(files) == 0 {
			t.Errorf("FileContainingSymbol(%s): %v, %d files", service, err, len(files))
		}
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

// TestMessageSizeLimit: each procedure accepts the largest request it can
// legitimately carry, in the costliest encoding (JSON spends six bytes on a
// control character: \u0001), and refuses a longer one with
// resource_exhausted before parsing it.
func TestMessageSizeLimit(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	costly := func(n int) string { return strings.Repeat("\x01", n) }
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c := env.ChatClient(t, protocol, uuid.New())
			var conversationID string
			t.Run("LargestPromptFits", func(t *testing.T) {
				res, err := c.CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{
					Title:        costly(chat.MaxTitleRunes),
					SystemPrompt: costly(chat.MaxSystemPromptBytes),
					RequestId:    costly(chat.MaxRequestIDBytes),
				}))
				if err != nil {
					t.Fatal(err)
				}
				conversationID = res.Msg.Conversation.Id
			})
			t.Run("LargestContentFits", func(t *testing.T) {
				if conversationID == "" {
					t.Fatal("no conversation")
				}
				stream, err := c.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{
					ConversationId:  conversationID,
					Content:         costly(chat.MaxContentBytes),
					ClientMessageId: costly(chat.MaxRequestIDBytes),
				}))
				if err != nil {
					t.Fatal(err)
				}
				for stream.Receive() {
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
			})
			tests := []struct {
				name string
				call func() error
			}{
				{"ErrPromptOverLimit", func() error {
					_, err := c.CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{SystemPrompt: strings.Repeat("x", 256<<10)}))
					return err
				}},
				{"ErrContentOverLimit", func() error {
					stream, err := c.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: uuid.NewString(), Content: strings.Repeat("x", 11<<20)}))
					if err != nil {
						return err
					}
					for stream.Receive() {
					}
					return stream.Err()
				}},
				{"ErrIDsOverLimit", func() error {
					_, err := c.GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: strings.Repeat("x", 20<<10)}))
					return err
				}},
				{"ErrAttachmentsOverLimit", func() error {
					// SendMessage's limit is raised for attachments (about
					// 10 MiB), and no further.
					stream, err := c.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{
						ConversationId: uuid.NewString(), Content: "x",
						Attachments: []*parleyv1.AttachmentUpload{{Name: "big.txt", Content: make([]byte, 11<<20)}},
					}))
					if err != nil {
						return err
					}
					defer stream.Close()
					for stream.Receive() {
					}
					return stream.Err()
				}},
				{"ErrOldLimit", func() error {
					_, err := c.CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{SystemPrompt: strings.Repeat("x", 11<<20)}))
					return err
				}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if err := tt.call(); connect.CodeOf(err) != connect.CodeResourceExhausted {
						t.Fatalf("err = %v, want resource_exhausted", err)
					}
				})
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

// TestAccessLogRefused: a call refused before its message is read (no
// valid token) still gets its access log line.
func TestAccessLogRefused(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	env := apitest.New(t, apitest.Options{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	for _, protocol := range apitest.Protocols {
		c := env.ChatClient(t, protocol, uuid.Nil)
		if _, err := c.CreateConversation(context.Background(), connect.NewRequest(&parleyv1.CreateConversationRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("%s: %v, want unauthenticated", protocol, err)
		}
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "rpc" &&
			m["procedure"] == parleyv1connect.ChatServiceCreateConversationProcedure && m["code"] == "unauthenticated" {
			seen[m["protocol"].(string)] = true
		}
	}
	for _, protocol := range []string{"connect", "grpc", "grpcweb"} {
		if !seen[protocol] {
			t.Errorf("no access log line for the refused %s call in:\n%s", protocol, logs.String())
		}
	}
}
