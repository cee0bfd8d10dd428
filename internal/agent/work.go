package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/parleyhq/parley/internal/chat"
)

// PromptPrefix starts the system prompt of every step; the offline model
// recognizes agent steps by it.
const PromptPrefix = "You are Parley's agent"

// stepTools are the tools each step may be offered (then narrowed to the
// run's selection).
var stepTools = map[StepName][]string{
	StepResearch: {ToolSearch, ToolReadArtifact},
	StepExecute:  {ToolReadArtifact, ToolCreateArtifact, ToolUpdateArtifact},
}

// instructions tell the model what each step is for.
var instructions = map[StepName]string{
	StepPlan:      "Turn the goal into a short numbered plan of at most five points. Do not do the work yet.",
	StepResearch:  "Gather what the user already has that bears on the goal: search their messages and artifacts, and read the artifacts that matter. Then list the findings briefly, naming the artifacts you used.",
	StepAnalyze:   "Work out what the findings mean for the goal: what is known, what is missing, and what to do.",
	StepExecute:   "Do the work of the plan. When the goal asks for a document or code, write it as an artifact with create_artifact (or update_artifact for one that exists). Then say briefly what you did.",
	StepSummarize: "Write the final answer for the user: what was done and the result, naming any artifacts written. It is shown to the user as is.",
}

// maxPriorRunes bounds each earlier step's output in a later step's prompt.
const maxPriorRunes = 8000

// prompt is what the model is told for the step: the step's
// instructions, the goal, and the earlier steps' outputs.
func (s *stepRun) prompt() []chat.PromptMessage {
	idx := s.task.Step
	system := fmt.Sprintf("%s, working on a user's goal in %d steps. This is step %d of %d: %s. %s",
		PromptPrefix, len(Steps), idx+1, len(Steps), Steps[idx], instructions[Steps[idx]])
	var b strings.Builder
	b.WriteString("Goal: ")
	b.WriteString(s.run.Goal)
	for _, st := range s.run.Steps {
		if st.Index >= idx || st.Output == "" {
			continue
		}
		out := st.Output
		if utf8.RuneCountInString(out) > maxPriorRunes {
			out = string([]rune(out)[:maxPriorRunes]) + " [cut]"
		}
		fmt.Fprintf(&b, "\n\n## %s\n%s", st.Name, out)
	}
	return []chat.PromptMessage{{Role: chat.RoleSystem, Content: system}, {Role: chat.RoleUser, Content: b.String()}}
}

// offered are the tool specs for this step: its own, narrowed to the
// run's selection.
func (s *stepRun) offered() []chat.ToolSpec {
	var names []string
	for _, n := range stepTools[s.name()] {
		if slices.Contains(s.run.Tools, n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 || s.r.tools == nil {
		return nil
	}
	return s.r.tools.Specs(names)
}

// work runs the step's model turns: while the model calls tools, the
// calls run and their results go back, at most MaxToolRounds times; the
// last turn is offered no tools, so it ends in text.
func (s *stepRun) work(ctx context.Context) error {
	_, provider, err := s.r.models.Resolve("model", s.run.Model)
	if err != nil {
		return err
	}
	prompt := s.prompt()
	specs := s.offered()
	// Rounds an earlier attempt saved are replayed into the prompt: their
	// tools ran already.
	s.mu.Lock()
	for _, rd := range s.rounds {
		assistant := chat.PromptMessage{Role: chat.RoleAssistant, Content: rd.Text}
		var results []chat.PromptMessage
		for _, c := range rd.Calls {
			assistant.ToolCalls = append(assistant.ToolCalls, chat.ToolCall{ID: c.ID, Name: c.Name, Arguments: c.Arguments})
			results = append(results, chat.PromptMessage{Role: chat.RoleTool, ToolCallID: c.ID, Content: c.Result})
		}
		prompt = append(append(prompt, assistant), results...)
	}
	done := len(s.rounds)
	s.mu.Unlock()
	for round := done + 1; ; round++ {
		var tools []chat.ToolSpec
		if round <= s.r.cfg.MaxToolRounds {
			tools = specs
		}
		text, calls, err := s.turn(ctx, provider, prompt, tools)
		if err != nil {
			return err
		}
		if len(calls) == 0 || len(tools) == 0 {
			return nil
		}
		record := chat.ToolRound{Text: text}
		assistant := chat.PromptMessage{Role: chat.RoleAssistant, Content: text, ToolCalls: calls}
		var results []chat.PromptMessage
		for i, call := range calls {
			use := s.call(ctx, call, tools, fmt.Sprintf("agent:%s:%d:%d:%d", s.run.ID, s.task.Step, round, i))
			record.Calls = append(record.Calls, use)
			results = append(results, chat.PromptMessage{Role: chat.RoleTool, ToolCallID: call.ID, Content: use.Result})
			if err := ctx.Err(); err != nil {
				return context.Cause(ctx)
			}
		}
		s.mu.Lock()
		s.rounds = append(s.rounds, record)
		s.roundsDirty = true // saved with the next flush, under the lease
		s.mu.Unlock()
		prompt = append(append(prompt, assistant), results...)
	}
}

// turn asks the model once, emitting its text as deltas, and returns the
// turn's text and the tool calls it made.
func (s *stepRun) turn(ctx context.Context, provider chat.Provider, prompt []chat.PromptMessage, tools []chat.ToolSpec) (string, []chat.ToolCall, error) {
	stream, err := provider.Stream(ctx, chat.ModelRequest{Model: s.run.Model, Messages: prompt, MaxTokens: s.r.cfg.MaxOutputTokens, Tools: tools})
	if err != nil {
		if ctx.Err() != nil {
			s.addUsage(chat.Usage{PromptTokens: int64(chat.EstimateTokens(promptText(prompt)))})
			return "", nil, context.Cause(ctx)
		}
		return "", nil, err
	}
	defer stream.Close()
	// Close unblocks a Recv that waits on the provider when the step is
	// canceled or runs out of time.
	stop := context.AfterFunc(ctx, func() { stream.Close() })
	defer stop()
	var text strings.Builder
	calls := map[int]*toolCallParts{}
	var order []int
	for {
		d, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.addUsage(stream.Usage())
			if ctx.Err() != nil {
				return text.String(), nil, context.Cause(ctx)
			}
			return text.String(), nil, err
		}
		if tc := d.ToolCall; tc != nil {
			c := calls[tc.Index]
			if c == nil {
				c = &toolCallParts{}
				calls[tc.Index] = c
				order = append(order, tc.Index)
			}
			c.add(*tc)
			continue
		}
		if d.Text != "" {
			t := chat.CleanText(d.Text)
			text.WriteString(t)
			s.emit(Event{Kind: EventDelta, Text: t})
		}
	}
	s.addUsage(stream.Usage())
	out := make([]chat.ToolCall, 0, len(order))
	for i, idx := range order {
		c := calls[idx].ToolCall
		if c.ID == "" {
			c.ID = "call_" + strconv.Itoa(i+1)
		}
		out = append(out, c)
	}
	return text.String(), out, nil
}

// toolCallParts assembles a tool call from the pieces a model streams.
type toolCallParts struct {
	chat.ToolCall
	args strings.Builder
}

func (c *toolCallParts) add(d chat.ToolCallDelta) {
	if d.ID != "" {
		c.ID = d.ID
	}
	c.Name += d.Name
	c.args.WriteString(d.Arguments)
	c.Arguments = c.args.String()
}

// call runs one tool call and emits its events. A tool not offered is
// the model's to correct, never a failed step.
// requestKey names the call's slot in the step (round and position), so
// a tool that writes (create_artifact) does it once even when an attempt
// that died before saving its round makes the call again.
func (s *stepRun) call(ctx context.Context, call chat.ToolCall, offered []chat.ToolSpec, requestKey string) chat.ToolUse {
	s.emit(Event{Kind: EventToolCall, CallID: call.ID, Tool: call.Name, Arguments: call.Arguments})
	var res chat.ToolResult
	if !slices.ContainsFunc(offered, func(t chat.ToolSpec) bool { return t.Name == call.Name }) {
		res = chat.ToolResult{IsError: true, Content: "there is no tool named " + strconv.Quote(call.Name) + " in this step"}
	} else {
		res = s.r.tools.Call(ctx, ToolCall{UserID: s.run.UserID, ConversationID: s.run.ConversationID, RequestKey: requestKey}, call)
	}
	use := chat.ToolUse{ID: call.ID, Name: call.Name, Arguments: call.Arguments, IsError: res.IsError, Artifact: res.Artifact,
		Result: chat.TruncateResult(res.Content, s.r.cfg.MaxToolResultBytes)}
	ev := Event{Kind: EventToolResult, CallID: call.ID, Tool: call.Name, Result: use.Result, IsError: use.IsError}
	if a := res.Artifact; a != nil {
		ev.ArtifactID, ev.ArtifactVersion = a.ID, a.Version
	}
	s.emit(ev)
	return use
}

func (s *stepRun) addUsage(u chat.Usage) {
	s.mu.Lock()
	s.usage.PromptTokens += u.PromptTokens
	s.usage.CompletionTokens += u.CompletionTokens
	s.mu.Unlock()
}

func promptText(msgs []chat.PromptMessage) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(m.Content)
	}
	return b.String()
}
