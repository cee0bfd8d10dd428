package chat_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parleyhq/parley/internal/chat"
)

func TestEstimateTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		want int
	}{
		{name: "OKEmpty", text: "", want: 0},
		{name: "OKOneChar", text: "a", want: 1},
		{name: "OKFourChars", text: "abcd", want: 1},
		{name: "OKFiveChars", text: "abcde", want: 2},
		{name: "OKCountsCharactersNotBytes", text: "héllo wörld", want: 3},
		{name: "OKLong", text: strings.Repeat("x", 400), want: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := chat.EstimateTokens(tt.text); got != tt.want {
				t.Errorf("EstimateTokens(%q) = %d, want %d", tt.text, got, tt.want)
			}
		})
	}
}

func TestTrimToBudget(t *testing.T) {
	t.Parallel()
	// Each message below costs exactly as many tokens as its number says:
	// four characters a token.
	msg := func(role chat.Role, tokens int) chat.PromptMessage {
		return chat.PromptMessage{Role: role, Content: strings.Repeat("abcd", tokens)}
	}
	sys, user, bot := chat.RoleSystem, chat.RoleUser, chat.RoleAssistant
	tests := []struct {
		name   string
		msgs   []chat.PromptMessage
		budget int
		want   []chat.PromptMessage
	}{
		{
			name:   "OKEmpty",
			msgs:   nil,
			budget: 10,
			want:   nil,
		},
		{
			name:   "OKAllFit",
			msgs:   []chat.PromptMessage{msg(sys, 2), msg(user, 3), msg(bot, 3), msg(user, 2)},
			budget: 10,
			want:   []chat.PromptMessage{msg(sys, 2), msg(user, 3), msg(bot, 3), msg(user, 2)},
		},
		{
			name:   "OKNeverStartsWithAToolResult",
			msgs:   []chat.PromptMessage{msg(user, 5), msg(bot, 4), msg(chat.RoleTool, 1), msg(bot, 1), msg(user, 1)},
			budget: 3,
			want:   []chat.PromptMessage{msg(bot, 1), msg(user, 1)},
		},
		{
			name:   "OKDropsOldestTurns",
			msgs:   []chat.PromptMessage{msg(user, 5), msg(bot, 4), msg(user, 3), msg(bot, 2), msg(user, 1)},
			budget: 6,
			want:   []chat.PromptMessage{msg(user, 3), msg(bot, 2), msg(user, 1)},
		},
		{
			name:   "OKKeepsSystemMessages",
			msgs:   []chat.PromptMessage{msg(sys, 2), msg(sys, 1), msg(user, 4), msg(bot, 3), msg(user, 2)},
			budget: 8,
			want:   []chat.PromptMessage{msg(sys, 2), msg(sys, 1), msg(bot, 3), msg(user, 2)},
		},
		{
			name:   "OKAlwaysKeepsNewest",
			msgs:   []chat.PromptMessage{msg(sys, 2), msg(user, 3), msg(bot, 3), msg(user, 50)},
			budget: 10,
			want:   []chat.PromptMessage{msg(sys, 2), msg(user, 50)},
		},
		{
			name:   "OKZeroBudget",
			msgs:   []chat.PromptMessage{msg(user, 1), msg(bot, 1), msg(user, 1)},
			budget: 0,
			want:   []chat.PromptMessage{msg(user, 1)},
		},
		{
			name:   "OKStopsAtFirstTurnThatDoesNotFit",
			msgs:   []chat.PromptMessage{msg(user, 1), msg(bot, 9), msg(user, 2)},
			budget: 5,
			want:   []chat.PromptMessage{msg(user, 2)},
		},
		{
			name:   "OKLaterSystemMessageIsATurn",
			msgs:   []chat.PromptMessage{msg(user, 4), msg(sys, 4), msg(user, 2)},
			budget: 6,
			want:   []chat.PromptMessage{msg(sys, 4), msg(user, 2)},
		},
		{
			name:   "OKOnlySystem",
			msgs:   []chat.PromptMessage{msg(sys, 9)},
			budget: 1,
			want:   []chat.PromptMessage{msg(sys, 9)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			input := append([]chat.PromptMessage(nil), tt.msgs...)
			got := chat.TrimToBudget(input, tt.budget)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("TrimToBudget (-want +got):\n%s", diff)
			}
			// The result is a new slice: editing it leaves the input alone.
			for i := range got {
				got[i].Content = "changed"
			}
			if diff := cmp.Diff(tt.msgs, input); diff != "" {
				t.Errorf("input changed (-want +got):\n%s", diff)
			}
		})
	}
}
