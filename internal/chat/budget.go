package chat

import (
	"slices"
	"unicode/utf8"
)

// EstimateTokens is a cheap token estimate (about 4 characters a token, at
// least 1 for non-empty text) used for budgets. It counts characters, not
// bytes, so text outside ASCII is not overcounted fourfold; a real tokenizer
// would be exact but costs a dependency per model family.
func EstimateTokens(s string) int {
	if s == "" {
		return 0
	}
	return (utf8.RuneCountInString(s) + 3) / 4
}

// TrimToBudget keeps the system message(s) at the start plus as many of the
// newest turns as fit budgetTokens, counting the system messages too and
// walking from the newest message backwards. It always keeps at least the
// newest message, even over budget, because a request without the user's
// latest turn is pointless; the provider then decides whether it fits.
// It stops at the first turn that does not fit rather than skipping to
// older, smaller ones, so the model never sees a conversation with holes.
// Only system messages before the first other turn are pinned; later ones
// are ordinary turns. Kept turns never start with a tool result, whose call
// would be cut off. The result is a new slice in the original order.
func TrimToBudget(msgs []PromptMessage, budgetTokens int) []PromptMessage {
	pinned := 0
	for pinned < len(msgs) && msgs[pinned].Role == RoleSystem {
		pinned++
	}
	if pinned == len(msgs) {
		return slices.Clone(msgs)
	}
	used := 0
	for _, m := range msgs[:pinned] {
		used += EstimateTokens(m.Content)
	}
	start := len(msgs) - 1 // the newest message is always kept
	used += EstimateTokens(msgs[start].Content)
	for start > pinned {
		cost := EstimateTokens(msgs[start-1].Content)
		if used+cost > budgetTokens {
			break
		}
		used += cost
		start--
	}
	// A tool result must follow the assistant turn that made its call:
	// never start the kept turns with one.
	for start < len(msgs)-1 && msgs[start].Role == RoleTool {
		start++
	}
	return slices.Concat(msgs[:pinned], msgs[start:])
}
