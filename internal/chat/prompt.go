package chat

// buildPrompt is the system prompt plus the branch, trimmed to the context
// budget from the newest turn backwards. Answers that ended early keep
// their partial text; empty answers are left out.
func (g *Generator) buildPrompt(xc ExchangeContext, history []Message) []PromptMessage {
	msgs := make([]PromptMessage, 0, len(history)+1)
	if xc.SystemPrompt != "" {
		msgs = append(msgs, PromptMessage{Role: RoleSystem, Content: xc.SystemPrompt})
	}
	for _, m := range history {
		if m.Content == "" {
			continue
		}
		msgs = append(msgs, PromptMessage{Role: m.Role, Content: m.Content})
	}
	budget := g.cfg.ContextTokens - g.cfg.MaxOutputTokens
	return TrimToBudget(msgs, budget)
}
