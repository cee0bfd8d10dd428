package llm_test

import (
	"context"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// TestProviderTitler asks the real openai-go provider (against the fake
// upstream) for a title and cleans it.
func TestProviderTitler(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Chunks([]string{`"Lisbon`, ` weekend"`, "."}), llmtest.Usage(40, 3))
	models := chat.NewModels().Add(llm.NewOpenAI(llm.OpenAIConfig{BaseURL: fake.URL, IdleTimeout: 5 * time.Second}), "m")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	title, usage, err := chat.ProviderTitler{Models: models}.Title(ctx, "m", "plan a weekend in lisbon")
	if err != nil {
		t.Fatal(err)
	}
	if usage != (chat.Usage{PromptTokens: 40, CompletionTokens: 3}) {
		t.Errorf("usage = %+v, want the provider's count to charge", usage)
	}
	if title != "Lisbon weekend" {
		t.Errorf("title = %q", title)
	}
	reqs := fake.Requests()
	if len(reqs) != 1 || len(reqs[0].Messages) != 2 || reqs[0].Messages[0].Role != "system" || reqs[0].Messages[1].Content != "plan a weekend in lisbon" {
		t.Errorf("title request = %+v", reqs)
	}
}
