package chat

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

func TestCleanTitle(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"OK", "Trip to Lisbon", "Trip to Lisbon"},
		{"Quotes", `"weekend in lisbon."`, "Weekend in lisbon"},
		{"Markdown", "# **Plans**\nsecond line", "Plans"},
		{"Long", strings.Repeat("a", 100), strings.Repeat("A", 1) + strings.Repeat("a", 79)},
		{"Empty", "  ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CleanTitle(tt.in); got != tt.want {
				t.Errorf("CleanTitle(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestProviderTitler asks the real openai-go provider (against the fake
// upstream) for a title and cleans it.
func TestProviderTitler(t *testing.T) {
	t.Parallel()
	fake := llmtest.NewServer(t, llmtest.Chunks([]string{`"Lisbon`, ` weekend"`, "."}))
	models := NewModels().Add(llm.NewOpenAI(llm.OpenAIConfig{BaseURL: fake.URL, IdleTimeout: 5 * time.Second}), "m")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	title, err := ProviderTitler{Models: models}.Title(ctx, "m", "plan a weekend in lisbon")
	if err != nil {
		t.Fatal(err)
	}
	if title != "Lisbon weekend" {
		t.Errorf("title = %q", title)
	}
	reqs := fake.Requests()
	if len(reqs) != 1 || len(reqs[0].Messages) != 2 || reqs[0].Messages[0].Role != "system" || reqs[0].Messages[1].Content != "plan a weekend in lisbon" {
		t.Errorf("title request = %+v", reqs)
	}
}

// TestBuildPromptTrims keeps the system prompt and the newest turns that
// fit the budget.
func TestBuildPromptTrims(t *testing.T) {
	t.Parallel()
	g := NewGenerator(nil, NewModels(), nil, nil, GeneratorConfig{ContextTokens: 20})
	long := strings.Repeat("word ", 20) // 25 tokens by the estimate
	history := []Message{
		{Role: RoleUser, Content: "old " + long},
		{Role: RoleAssistant, Content: "old answer " + long},
		{Role: RoleAssistant, Content: ""}, // an empty (failed) answer is left out
		{Role: RoleUser, Content: "newest question"},
	}
	got := g.buildPrompt(ExchangeContext{SystemPrompt: "Be brief."}, history, "m")
	var roles []string
	for _, m := range got {
		roles = append(roles, string(m.Role)+":"+m.Content)
	}
	want := []string{"system:Be brief.", "user:newest question"}
	if strings.Join(roles, "|") != strings.Join(want, "|") {
		t.Errorf("prompt = %q, want %q", roles, want)
	}
}
