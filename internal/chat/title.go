package chat

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Titler writes a short title for a conversation from its first message.
type Titler interface {
	// Title returns the title and the tokens it cost, which are charged to
	// the user like an answer's (also when it fails after the model was
	// asked).
	Title(ctx context.Context, model, firstMessage string) (string, Usage, error)
}

// ProviderTitler asks the conversation's model for a title.
type ProviderTitler struct{ Models *Models }

// Title implements Titler.
func (t ProviderTitler) Title(ctx context.Context, model, firstMessage string) (string, Usage, error) {
	_, p, err := t.Models.resolve("model", model)
	if err != nil {
		return "", Usage{}, err
	}
	if len(firstMessage) > 2000 {
		firstMessage = firstMessage[:2000]
	}
	prompt := []PromptMessage{
		{Role: RoleSystem, Content: "Write a title of at most six words for a conversation that starts with the user's message. Answer with the title only, no quotes."},
		{Role: RoleUser, Content: firstMessage},
	}
	s, err := p.Stream(ctx, ModelRequest{Model: model, MaxTokens: 24, Messages: prompt})
	if err != nil {
		if ctx.Err() != nil {
			// Cut after the prompt was sent: the provider bills it.
			return "", Usage{PromptTokens: promptTokens(prompt)}, err
		}
		return "", Usage{}, err
	}
	defer s.Close()
	var b strings.Builder
	for {
		d, err := s.Recv()
		if err != nil {
			break
		}
		b.WriteString(d.Text)
	}
	return CleanTitle(b.String()), s.Usage(), nil
}

// HeuristicTitler titles a conversation with the first words of its first
// message; the offline dev provider uses it.
type HeuristicTitler struct{}

// Title implements Titler.
func (HeuristicTitler) Title(_ context.Context, _, firstMessage string) (string, Usage, error) {
	words := strings.Fields(firstMessage)
	if len(words) > 6 {
		words = words[:6]
	}
	return CleanTitle(strings.Join(words, " ")), Usage{}, nil
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

// startTitle writes a title for a conversation's first exchange, beside
// the answer so the first token is not delayed. The channel closes when done.
func (gen *generation) startTitle() <-chan struct{} {
	done := make(chan struct{})
	g := gen.g
	if !gen.wantsTitle {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		defer func() {
			// A titler's panic (a provider's bug) costs the title, not the process.
			if p := recover(); p != nil {
				g.log.Error("panic while writing a title", "generation_id", gen.id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			}
		}()
		// Not canceled by a stop (the title is still wanted), but by shutdown.
		ctx, cancel := context.WithTimeout(g.base, 20*time.Second)
		defer cancel()
		title, usage, err := g.cfg.Titler.Title(ctx, gen.model, gen.titleFrom)
		if err != nil {
			g.log.Warn("title generation failed", "generation_id", gen.id, "err", err)
			title = ""
		}
		tokens := usage.PromptTokens + usage.CompletionTokens
		if title == "" && tokens == 0 {
			return
		}
		// Titles cost what answers cost: they count against the quota, even
		// when no title came or shutdown cut it short, in the same write.
		saveCtx, cancelSave := context.WithTimeout(context.WithoutCancel(ctx), finalSaveTimeout)
		defer cancelSave()
		set, err := g.store.SaveTitle(saveCtx, gen.userID, gen.conversationID, title, gen.createTime, tokens)
		if err != nil {
			g.log.Warn("saving a title failed", "generation_id", gen.id, "tokens", tokens, "err", err)
			return
		}
		if set {
			gen.emit(Event{Kind: EventTitle, Title: title})
		}
	}()
	return done
}
