package chat

import "strings"

// buildPrompt is the system prompt plus the branch, trimmed to the context
// budget from the newest turn backwards. Answers that ended early keep
// their partial text; empty answers are left out.
func (g *Generator) buildPrompt(xc ExchangeContext, history []Message) []PromptMessage {
	msgs := make([]PromptMessage, 0, len(history)+1)
	if xc.SystemPrompt != "" {
		msgs = append(msgs, PromptMessage{Role: RoleSystem, Content: xc.SystemPrompt})
	}
	for _, m := range history {
		msgs = appendTurn(msgs, m)
	}
	budget := g.cfg.ContextTokens - g.cfg.MaxOutputTokens
	return TrimToBudget(msgs, budget)
}

// appendTurn adds a saved message to a prompt. An answer that called
// tools becomes the turns the model saw: each round's text and calls, the
// calls' results, then the rest of the text. Empty messages are left out.
func appendTurn(msgs []PromptMessage, m Message) []PromptMessage {
	rest := m.Content
	for _, r := range m.ToolRounds {
		call := PromptMessage{Role: RoleAssistant, Content: r.Text}
		var results []PromptMessage
		for _, u := range r.Calls {
			call.ToolCalls = append(call.ToolCalls, ToolCall{ID: u.ID, Name: u.Name, Arguments: u.Arguments})
			results = append(results, PromptMessage{Role: RoleTool, ToolCallID: u.ID, Content: u.Result})
		}
		msgs = append(append(msgs, call), results...)
		rest = strings.TrimPrefix(rest, r.Text)
	}
	if rest != "" {
		msgs = append(msgs, PromptMessage{Role: m.Role, Content: rest})
	}
	return msgs
}
