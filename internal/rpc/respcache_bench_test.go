package rpc_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/redistest"
)

// BenchmarkResponseCacheTTFT measures time to first token (SendMessage
// sent to the first delta received, Connect binary, Redis cache) when the
// answer comes from the response cache against when the model writes it.
// The model is the offline one at 15 ms a word, the dev default: a real
// provider's first token takes longer, so the miss is a lower bound.
//
//	go test -run '^$' -bench ResponseCacheTTFT ./internal/rpc/
func BenchmarkResponseCacheTTFT(b *testing.B) {
	env := apitest.New(b, apitest.Options{
		RedisURL: redistest.URL(b), RedisPrefix: redistest.Prefix(b), Provider: llm.NewOffline(15 * time.Millisecond),
		ResponseCacheTTL: time.Hour,
	})
	c := env.ChatClient(b, "connect+proto", uuid.New())
	ttft := func(b *testing.B, content string) time.Duration {
		b.StopTimer()
		conv := create(b, c, "bench")
		b.StartTimer()
		start := time.Now()
		stream, err := send(b.Context(), c, conv.Id, content)
		if err != nil {
			b.Fatal(err)
		}
		defer stream.Close()
		var first time.Duration
		for stream.Receive() {
			if first == 0 && stream.Msg().GetDelta() != nil {
				first = time.Since(start)
			}
		}
		if err := stream.Err(); err != nil || first == 0 {
			b.Fatalf("no delta (err %v)", err)
		}
		return first
	}
	run := func(b *testing.B, content func(i int) string) {
		var total time.Duration
		i := 0
		for b.Loop() {
			total += ttft(b, content(i))
			i++
		}
		b.ReportMetric(float64(total.Microseconds())/float64(i)/1000, "ms-ttft")
	}
	b.Run("miss", func(b *testing.B) {
		run(b, func(i int) string { return fmt.Sprintf("question number %d about the weather", i) })
	})
	ttft(b, "the same question about the weather") // kept in the cache
	b.Run("hit", func(b *testing.B) {
		run(b, func(int) string { return "the same question about the weather" })
	})
}
