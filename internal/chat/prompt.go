package chat

import (
	"context"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parleyhq/parley/internal/llm"
)

// buildPrompt is the system prompt plus the branch, trimmed to the context
// budget from the newest turn backwards. Answers that ended early keep
// their partial text; empty answers are left out.
func (g *Generator) buildPrompt(xc ExchangeContext, history []Message, model string) []llm.Message {
	msgs := make([]llm.Message, 0, len(history)+1)
	if xc.SystemPrompt != "" {
		msgs = append(msgs, llm.Message{Role: llm.RoleSystem, Content: xc.SystemPrompt})
	}
	for _, m := range history {
		if m.Content == "" {
			continue
		}
		msgs = append(msgs, llm.Message{Role: llm.Role(m.Role), Content: m.Content})
	}
	budget := g.cfg.ContextTokens - g.cfg.MaxOutputTokens
	return llm.TrimToBudget(msgs, budget)
}

// Titler writes a short title for a conversation from its first message.
type Titler interface {
	Title(ctx context.Context, model, firstMessage string) (string, error)
}

// ProviderTitler asks the conversation's model for a title.
type ProviderTitler struct{ Models *Models }

// Title implements Titler.
func (t ProviderTitler) Title(ctx context.Context, model, firstMessage string) (string, error) {
	_, p, err := t.Models.resolve("model", model)
	if err != nil {
		return "", err
	}
	if len(firstMessage) > 2000 {
		firstMessage = firstMessage[:2000]
	}
	s, err := p.Stream(ctx, llm.Request{Model: model, MaxTokens: 24, Messages: []llm.Message{
		{Role: llm.RoleSystem, Content: "Write a title of at most six words for a conversation that starts with the user's message. Answer with the title only, no quotes."},
		{Role: llm.RoleUser, Content: firstMessage},
	}})
	if err != nil {
		return "", err
	}
	defer s.Close()
	var b strings.Builder
	for {
		text, err := s.Recv()
		if err != nil {
			break
		}
		b.WriteString(text)
	}
	return CleanTitle(b.String()), nil
}

// HeuristicTitler titles a conversation with the first words of its first
// message; the offline dev provider uses it.
type HeuristicTitler struct{}

// Title implements Titler.
func (HeuristicTitler) Title(_ context.Context, _, firstMessage string) (string, error) {
	words := strings.Fields(firstMessage)
	if len(words) > 6 {
		words = words[:6]
	}
	return CleanTitle(strings.Join(words, " ")), nil
}

// CleanTitle trims quotes, punctuation and length from a model's title.
func CleanTitle(s string) string {
	s = strings.TrimSpace(strings.SplitN(strings.TrimSpace(s), "\n", 2)[0])
	s = strings.TrimLeft(s, "\"'*#` \t")
	s = strings.TrimRight(s, "\"'*#`.!?:;, \t")
	for utf8.RuneCountInString(s) > 80 {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	if s != "" {
		r, size := utf8.DecodeRuneInString(s)
		s = string(unicode.ToUpper(r)) + s[size:]
	}
	return s
}
