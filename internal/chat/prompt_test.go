package chat

import (
	"strings"
	"testing"
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
	got := g.buildPrompt(ExchangeContext{SystemPrompt: "Be brief."}, history)
	var roles []string
	for _, m := range got {
		roles = append(roles, string(m.Role)+":"+m.Content)
	}
	want := []string{"system:Be brief.", "user:newest question"}
	if strings.Join(roles, "|") != strings.Join(want, "|") {
		t.Errorf("prompt = %q, want %q", roles, want)
	}
}
