package store_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/redisconn"
	"github.com/parleyhq/parley/internal/redistest"
	"github.com/parleyhq/parley/internal/store"
)

// The caching question (issue 5): is a Redis cache in front of a read worth
// it? These two benchmarks, run in the same process against the same
// loopback servers, compare the read itself with the round trip a cache hit
// would cost. `make bench` reports their ratio in BENCHMARKS.md.

// BenchmarkGetConversation is the read a cache would replace.
func BenchmarkGetConversation(b *testing.B) {
	st := store.New(pgtestPool(b))
	ctx := context.Background()
	user := uuid.New()
	conv, err := st.CreateConversation(ctx, user, chat.NewConversation{Title: "cached?", SystemPrompt: "Be brief."})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := st.GetConversation(ctx, user, conv.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisGetHit is what a cache hit would cost instead: one GET of a
// value of the conversation's size.
func BenchmarkRedisGetHit(b *testing.B) {
	client, err := redisconn.NewClient(redistest.URL(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	ctx := context.Background()
	key := redistest.Prefix(b) + "conversation"
	value := make([]byte, 300)
	if err := client.Set(ctx, key, value, 0).Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := client.Get(ctx, key).Bytes(); err != nil {
			b.Fatal(err)
		}
	}
}
