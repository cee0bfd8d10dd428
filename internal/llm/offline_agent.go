package llm

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/chat"
)

// The offline responder's side of agent runs: every step answers with
// deterministic text, and a step offered tools calls one first (research
// searches, execute writes a document), so `make dev` runs the whole
// agent path, tools included, with no model.

// agentStepRE compiles on the first offline agent step.
var agentStepRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`step (\d) of \d: (\w+)`) })

// agentStep returns the step an agent prompt is for ("" when req is not
// an agent step) and the run's goal.
func agentStep(req chat.ModelRequest) (step, goal string) {
	if len(req.Messages) == 0 || req.Messages[0].Role != chat.RoleSystem ||
		!strings.HasPrefix(req.Messages[0].Content, agent.PromptPrefix) {
		return "", ""
	}
	m := agentStepRE().FindStringSubmatch(req.Messages[0].Content)
	if m == nil {
		return "", ""
	}
	for _, msg := range req.Messages {
		if msg.Role == chat.RoleUser {
			goal, _, _ = strings.Cut(strings.TrimPrefix(msg.Content, "Goal: "), "\n")
			break
		}
	}
	return m[2], strings.TrimSpace(goal)
}

// agentPieces is the offline model's turn in an agent step.
func agentPieces(req chat.ModelRequest, step, goal string) ([]chat.Delta, string) {
	last := req.Messages[len(req.Messages)-1]
	if last.Role != chat.RoleTool && len(req.Tools) > 0 {
		switch {
		case offers(req.Tools, agent.ToolSearch):
			return singleCall("call_offline_search", agent.ToolSearch, map[string]string{"query": keywords(goal)}), "tool_calls"
		case offers(req.Tools, agent.ToolCreateArtifact):
			return documentCall("write " + goal), "tool_calls"
		}
	}
	var text string
	switch step {
	case string(agent.StepPlan):
		text = fmt.Sprintf("Plan for %q: 1. Look for what you already have on it. 2. Work out what it means. 3. Write the result as a document. 4. Sum it up.", goal)
	case string(agent.StepResearch):
		text = fmt.Sprintf("Findings: %s", toolFindings(req.Messages))
	case string(agent.StepAnalyze):
		text = fmt.Sprintf("Analysis: the findings cover part of %q; the rest is written from the plan.", goal)
	case string(agent.StepExecute):
		text = toolReply(req.Messages)
		if last.Role != chat.RoleTool {
			text = "Nothing was written: no tool to write with was allowed."
		}
	default:
		text = fmt.Sprintf("Summary: the agent planned, researched, analyzed and carried out %q, step by step, with the offline model.", goal)
	}
	return words(text), "stop"
}

// singleCall is one tool call with args, streamed as a model streams it.
func singleCall(id, name string, args map[string]string) []chat.Delta {
	raw, _ := json.Marshal(args) // a map of strings always marshals
	return []chat.Delta{
		{ToolCall: &chat.ToolCallDelta{Index: 0, ID: id, Name: name}},
		{ToolCall: &chat.ToolCallDelta{Index: 0, Arguments: string(raw)}},
	}
}

// keywords are the goal's three longest words, any of which may match,
// as a search query.
func keywords(goal string) string {
	var words []string
	for _, w := range strings.Fields(goal) {
		if w = strings.Trim(w, ".,;:!?\"'()"); len(w) > 3 {
			words = append(words, w)
		}
	}
	if len(words) == 0 {
		return goal
	}
	slices.SortStableFunc(words, func(a, b string) int { return len(b) - len(a) })
	return strings.Join(words[:min(3, len(words))], " or ")
}

// toolFindings describes the search results the model was given.
func toolFindings(msgs []chat.PromptMessage) string {
	last := msgs[len(msgs)-1]
	if last.Role != chat.RoleTool {
		return "no search was allowed, so there is nothing earlier to build on."
	}
	var res struct {
		Results []struct{ Title string } `json:"results"`
	}
	if err := json.Unmarshal([]byte(last.Content), &res); err != nil || len(res.Results) == 0 {
		return "nothing earlier matches the goal."
	}
	titles := make([]string, 0, len(res.Results))
	for _, r := range res.Results {
		titles = append(titles, fmt.Sprintf("%q", r.Title))
	}
	return fmt.Sprintf("%d earlier items match: %s.", len(res.Results), strings.Join(titles, ", "))
}
