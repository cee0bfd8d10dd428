package llm_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// BenchmarkOpenAIStream is the upstream side of every answer: one op asks
// the fake model for an answer of 64 deltas of 16 bytes (sent at once) and
// reads it through openai-go's SSE decoder, as a generation does. The
// fake server's own work is included; ns/delta divides the op by 64.
func BenchmarkOpenAIStream(b *testing.B) {
	const deltas = 64
	srv := llmtest.NewServer(b, llmtest.Chunks(llmtest.FixedChunks(deltas, 16)))
	provider := llm.NewOpenAI(llm.OpenAIConfig{BaseURL: srv.URL})
	req := chat.ModelRequest{Model: "bench-model", Messages: []chat.PromptMessage{{Role: chat.RoleUser, Content: "Tell me something."}}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s, err := provider.Stream(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := s.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		s.Close()
		if n != deltas {
			b.Fatalf("received %d deltas, want %d", n, deltas)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*deltas), "ns/delta")
}
