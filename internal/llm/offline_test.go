package llm_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/llm"
)

// offlineAnswer streams the offline answer to one user message.
func offlineAnswer(tb testing.TB, p *llm.Offline, message string) ([]string, chat.ModelStream) {
	tb.Helper()
	stream, err := p.Stream(tb.Context(), chat.ModelRequest{
		Model: llm.OfflineModel,
		Messages: []chat.PromptMessage{
			{Role: chat.RoleSystem, Content: "You are helpful."},
			{Role: chat.RoleUser, Content: message},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stream.Close() })
	deltas, err := collect(tb, stream)
	if err != nil {
		tb.Fatal(err)
	}
	return deltas, stream
}

func TestOffline(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		deltas, stream := offlineAnswer(t, llm.NewOffline(0), "Hello there")
		if len(deltas) < 2 {
			t.Fatalf("got %d deltas, want the answer word by word", len(deltas))
		}
		for i, d := range deltas {
			word := strings.TrimPrefix(d, " ")
			if word == "" || strings.ContainsAny(word, " \n") || (i > 0) != strings.HasPrefix(d, " ") {
				t.Errorf("delta %d = %q, want one word with a leading space after the first", i, d)
			}
		}
		answer := strings.Join(deltas, "")
		if got := stream.FinishReason(); got != "stop" {
			t.Errorf("finish reason = %q, want stop", got)
		}
		usage := stream.Usage()
		if usage.PromptTokens <= 0 || usage.CompletionTokens != int64(chat.EstimateTokens(answer)) {
			t.Errorf("usage = %+v, want a prompt estimate and %d completion tokens", usage, chat.EstimateTokens(answer))
		}
	})

	t.Run("OKDeterministic", func(t *testing.T) {
		t.Parallel()
		for _, message := range []string{"I need a holiday", "hello", "Why is the sky blue?", ""} {
			first, _ := offlineAnswer(t, llm.NewOffline(0), message)
			second, _ := offlineAnswer(t, llm.NewOffline(0), message)
			if a, b := strings.Join(first, ""), strings.Join(second, ""); a != b || a == "" {
				t.Errorf("answers to %q = %q and %q, want the same non-empty answer", message, a, b)
			}
		}
	})

	t.Run("OKReactsToInput", func(t *testing.T) {
		t.Parallel()
		answers := map[string]bool{}
		for message, want := range map[string]string{
			"I need a holiday":          "a holiday",
			"I am worried about my job": "worried about your job",
			"My sister visits tomorrow": "your sister",
			"hello":                     "offline",
		} {
			deltas, _ := offlineAnswer(t, llm.NewOffline(0), message)
			answer := strings.Join(deltas, "")
			if !strings.Contains(answer, want) {
				t.Errorf("answer to %q = %q, want it to contain %q", message, answer, want)
			}
			answers[answer] = true
		}
		if len(answers) != 4 {
			t.Errorf("got %d distinct answers to 4 different messages", len(answers))
		}
	})

	t.Run("OKDelay", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		deltas, _ := offlineAnswer(t, llm.NewOffline(5*time.Millisecond), "I need a holiday")
		if min := time.Duration(len(deltas)) * 5 * time.Millisecond; time.Since(start) < min {
			t.Errorf("streamed %d words in %v, want at least %v", len(deltas), time.Since(start), min)
		}
	})

	t.Run("ErrCanceledContext", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		stream, err := llm.NewOffline(time.Hour).Stream(ctx, chat.ModelRequest{Messages: []chat.PromptMessage{{Role: chat.RoleUser, Content: "hi"}}})
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		time.AfterFunc(10*time.Millisecond, cancel)
		_, err = stream.Recv()
		mustAppErr(t, err, apperr.Canceled)
	})

	t.Run("ErrCanceledClose", func(t *testing.T) {
		t.Parallel()
		stream, err := llm.NewOffline(time.Hour).Stream(t.Context(), chat.ModelRequest{Messages: []chat.PromptMessage{{Role: chat.RoleUser, Content: "hi"}}})
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(10*time.Millisecond, func() { stream.Close() })
		_, err = stream.Recv()
		mustAppErr(t, err, apperr.Canceled)
		if stream.FinishReason() != "" {
			t.Errorf("finish reason = %q after Close, want empty", stream.FinishReason())
		}
	})
}
