package chat

import (
	"context"
	"errors"
	"io"
	"strings"
)

// Stage 3 of an answer: ask the model and turn its deltas into events.
// Local followers read the events from memory at once; the mirror
// (mirror.go) and the checkpoints (checkpoint.go) catch up on their own.

// streamModel relays deltas until the answer ends and returns usage and
// finish reason, or the error that cut it.
func (gen *generation) streamModel() (Usage, string, error) {
	req := ModelRequest{Model: gen.answer.Model, Messages: gen.prompt, MaxTokens: gen.g.cfg.MaxOutputTokens}
	s, err := gen.provider.Stream(gen.ctx, req)
	if err != nil {
		if gen.ctx.Err() != nil {
			// Stopped (or interrupted) while the provider was being asked:
			// the prompt was sent, and providers bill a prompt they read.
			return Usage{PromptTokens: promptTokens(gen.prompt)}, "", err
		}
		// The provider refused the request: nothing was billed.
		return Usage{}, "", err
	}
	defer s.Close()
	// Close unblocks a Recv waiting on the provider when the generation
	// is stopped or interrupted.
	stopWatch := context.AfterFunc(gen.ctx, func() { s.Close() })
	defer stopWatch()
	for {
		text, err := s.Recv()
		if errors.Is(err, io.EOF) {
			usage := s.Usage()
			gen.emit(Event{Kind: EventUsage, Usage: &usage})
			return usage, s.FinishReason(), nil
		}
		if err != nil {
			return s.Usage(), s.FinishReason(), err
		}
		if gen.ctx.Err() != nil {
			// Charge what was used so far (the provider's estimate).
			return s.Usage(), "", context.Cause(gen.ctx)
		}
		if text == "" {
			continue
		}
		text = cleanText(text)
		gen.mu.Lock()
		gen.text.WriteString(text)
		gen.deltas++
		full := gen.deltas >= gen.g.cfg.MaxDeltas
		gen.mu.Unlock()
		gen.emit(Event{Kind: EventDelta, Text: text})
		if full {
			gen.cancel(errTooManyEvents)
			return s.Usage(), "length", errTooManyEvents
		}
	}
}

// cleanText makes model output storable: Postgres text holds neither NUL
// bytes nor invalid UTF-8, and one such answer must not fail the shared
// checkpoint statement of every answer on the instance.
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
