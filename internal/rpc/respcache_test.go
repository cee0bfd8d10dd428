package rpc_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/redistest"
)

// countingModel is the offline model, counting the requests per last user
// message, so a test can tell a cached answer from a written one.
type countingModel struct {
	chat.Provider
	mu    sync.Mutex
	asked map[string]int
}

func newCountingModel() *countingModel {
	return &countingModel{Provider: llm.NewOffline(0), asked: map[string]int{}}
}

func (m *countingModel) Stream(ctx context.Context, req chat.ModelRequest) (chat.ModelStream, error) {
	m.mu.Lock()
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == chat.RoleUser {
			m.asked[req.Messages[i].Content]++
			break
		}
	}
	m.mu.Unlock()
	return m.Provider.Stream(ctx, req)
}

func (m *countingModel) times(content string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.asked[content]
}

// cacheEnv is a server with the response cache on its own Redis prefix.
func cacheEnv(t *testing.T, ttl time.Duration, shared bool) (*apitest.Env, *countingModel, string) {
	t.Helper()
	model := newCountingModel()
	prefix := redistest.Prefix(t)
	env := apitest.New(t, apitest.Options{
		RedisURL: redistest.URL(t), RedisPrefix: prefix, Provider: model,
		ResponseCacheTTL: ttl, ResponseCacheShared: shared,
	})
	return env, model, prefix
}

// cacheRedis is a client of the Redis the cache servers use, closed when
// the test ends, for tests that look at the keys.
func cacheRedis(t *testing.T) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// answer sends content in a new conversation and returns the completed
// answer and the events before it.
func answer(t *testing.T, c parleyv1connect.ChatServiceClient, content string) (*parleyv1.Message, events, string) {
	t.Helper()
	conv := create(t, c, "cache")
	stream, err := send(testCtx(t), c, conv.Id, content)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := collect(t, stream, 1)
	if err != nil {
		t.Fatal(err)
	}
	return completed(t, evs), evs, conv.Id
}

func TestResponseCache(t *testing.T) {
	t.Parallel()
	env, model, _ := cacheEnv(t, time.Minute, false)
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			owner := uuid.New()
			c := env.ChatClient(t, protocol, owner)
			content := "What is the capital of Portugal? (" + protocol + ")"

			first, _, _ := answer(t, c, content)
			if first.Cached || model.times(content) != 1 {
				t.Fatalf("first answer: cached %v, model asked %d times", first.Cached, model.times(content))
			}

			t.Run("Hit", func(t *testing.T) {
				hit, evs, convID := answer(t, c, content)
				if model.times(content) != 1 {
					t.Fatalf("the model was asked %d times, want once", model.times(content))
				}
				if evs[0].GetStarted() == nil || deltas(evs) != first.Content || evs[len(evs)-2].GetUsage() == nil {
					t.Fatalf("a hit must stream started, deltas, usage, completed: %v", evs)
				}
				if !hit.Cached || hit.Content != first.Content || hit.Usage.CompletionTokens != 0 || hit.Usage.PromptTokens == 0 {
					t.Fatalf("hit saved as %v", hit)
				}
				listed := messages(t, c, convID)
				if got := listed[len(listed)-1]; !got.Cached || got.Content != first.Content || got.Usage.CompletionTokens != 0 {
					t.Fatalf("ListMessages shows %v", got)
				}
			})
			t.Run("PerUser", func(t *testing.T) {
				other, _, _ := answer(t, env.ChatClient(t, protocol, uuid.New()), content)
				if other.Cached || model.times(content) != 2 {
					t.Fatalf("another user: cached %v, model asked %d times; want a fresh answer", other.Cached, model.times(content))
				}
			})
			t.Run("NotWithToolCalls", func(t *testing.T) {
				// The offline model writes an artifact for "write …".
				write := "write a haiku about caching (" + protocol + ")"
				for range 2 {
					m, _, _ := answer(t, c, write)
					if m.Cached || len(m.ToolUses) == 0 {
						t.Fatalf("an answer with tool calls: cached %v, %d tool uses", m.Cached, len(m.ToolUses))
					}
				}
			})
		})
	}
}

func TestResponseCacheShared(t *testing.T) {
	t.Parallel()
	env, model, _ := cacheEnv(t, time.Minute, true)
	content := "Tell me about Lisbon."
	answer(t, env.ChatClient(t, "connect+proto", uuid.New()), content)
	second := uuid.New()
	m, _, _ := answer(t, env.ChatClient(t, "grpc", second), content)
	if !m.Cached || model.times(content) != 1 {
		t.Fatalf("shared cache: another user's answer cached %v, model asked %d times", m.Cached, model.times(content))
	}
	// The export keeps the mark.
	doc, _ := export(t, env.UserClient(t, "grpc", second), 0, "")
	var got struct {
		Conversations []struct {
			Messages []struct {
				Role   string `json:"role"`
				Cached bool   `json:"cached"`
			} `json:"messages"`
		} `json:"conversations"`
	}
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Conversations) != 1 || len(got.Conversations[0].Messages) != 2 || !got.Conversations[0].Messages[1].Cached {
		t.Fatalf("export: %+v, want the answer marked cached", got)
	}
}

func TestResponseCacheOffByDefault(t *testing.T) {
	t.Parallel()
	model := newCountingModel()
	env := apitest.New(t, apitest.Options{RedisURL: redistest.URL(t), RedisPrefix: redistest.Prefix(t), Provider: model})
	c := env.ChatClient(t, "connect+json", uuid.New())
	for range 2 {
		if m, _, _ := answer(t, c, "hello there"); m.Cached {
			t.Fatal("cached without RESPONSE_CACHE_TTL")
		}
	}
	if n := model.times("hello there"); n != 2 {
		t.Fatalf("model asked %d times, want 2", n)
	}
}

// TestResponseCacheTTL: the answer is kept for the TTL only; once Redis
// expired it, the model is asked again.
func TestResponseCacheTTL(t *testing.T) {
	t.Parallel()
	env, model, prefix := cacheEnv(t, 300*time.Millisecond, false)
	c := env.ChatClient(t, "connect+json", uuid.New())
	content := "short lived"
	answer(t, c, content)

	rdb := cacheRedis(t)
	ctx := testCtx(t)
	keys := func() []string {
		ks, err := rdb.Keys(ctx, prefix+"rc:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	ks := keys()
	if len(ks) != 1 || !strings.Contains(ks[0], ":u:") {
		t.Fatalf("cache keys %v, want one per-user key", ks)
	}
	if ttl := rdb.PTTL(ctx, ks[0]).Val(); ttl <= 0 || ttl > 300*time.Millisecond {
		t.Fatalf("key TTL %v, want at most 300ms", ttl)
	}
	// Redis expires the key: wait for it to go (bounded), not a fixed sleep.
	deadline := time.Now().Add(5 * time.Second)
	for len(keys()) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the cached answer did not expire")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m, _, _ := answer(t, c, content); m.Cached || model.times(content) != 2 {
		t.Fatalf("after expiry: cached %v, model asked %d times", m.Cached, model.times(content))
	}
}

// TestResponseCacheForgottenWithAccount: DeleteMe deletes the user's
// cached answers at once, not at their TTL, and no other user's.
func TestResponseCacheForgottenWithAccount(t *testing.T) {
	t.Parallel()
	env, _, prefix := cacheEnv(t, time.Hour, false)
	gone, kept := uuid.New(), uuid.New()
	for _, u := range []uuid.UUID{gone, kept} {
		answer(t, env.ChatClient(t, "connect+json", u), "remember me")
	}
	rdb := cacheRedis(t)
	ctx := testCtx(t)
	keysOf := func(u uuid.UUID) []string {
		ks, err := rdb.Keys(ctx, prefix+"rc:u:"+u.String()+":*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	if len(keysOf(gone)) != 1 || len(keysOf(kept)) != 1 {
		t.Fatalf("cached before: %v and %v, want one answer each", keysOf(gone), keysOf(kept))
	}
	if _, err := env.UserClient(t, "grpc", gone).DeleteMe(ctx, connect.NewRequest(&parleyv1.DeleteMeRequest{})); err != nil {
		t.Fatal(err)
	}
	if ks := keysOf(gone); len(ks) != 0 {
		t.Errorf("after DeleteMe the user's cached answers remain: %v", ks)
	}
	if len(keysOf(kept)) != 1 {
		t.Errorf("DeleteMe of one user removed another's cached answer")
	}
}
