package chat

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Stage 3 of an answer: ask the model and turn its deltas into events.
// Local followers read the events from memory at once; the mirror
// (mirror.go) and the checkpoints (checkpoint.go) catch up on their own.
//
// With a Toolbox, an answer is a loop of turns: while the model calls
// tools (finish reason "tool_calls"), the calls run here, their results
// go back to the model, and it is asked again, at most MaxToolRounds
// times with tools offered; the last turn is offered none, so it ends in
// text. All the text of all turns is the answer's content; the calls are
// kept in the answer's ToolRounds.

// streamModel runs the answer's turns until one ends in text, and returns
// the usage of all of them and the last finish reason, or the error that
// cut the answer.
func (gen *generation) streamModel() (Usage, string, error) {
	if gen.cached != nil {
		return gen.streamCached(*gen.cached)
	}
	var total Usage
	prompt := slices.Clone(gen.prompt)
	specs := gen.g.toolSpecs() // asked once per answer
	for round := 1; ; round++ {
		var tools []ToolSpec
		if round <= gen.g.cfg.MaxToolRounds {
			tools = specs
		}
		t, err := gen.streamTurn(prompt, tools)
		total.PromptTokens += t.usage.PromptTokens
		total.CompletionTokens += t.usage.CompletionTokens
		if err != nil {
			return total, t.finishReason, err
		}
		if len(t.calls) == 0 || len(tools) == 0 {
			// A call the model made without tools on offer is not run.
			usage := total
			gen.emit(Event{Kind: EventUsage, Usage: &usage})
			return total, t.finishReason, nil
		}
		record := ToolRound{Text: t.text}
		assistant := PromptMessage{Role: RoleAssistant, Content: t.text}
		var results []PromptMessage
		for _, call := range t.calls {
			use := gen.runTool(call, tools)
			record.Calls = append(record.Calls, use)
			assistant.ToolCalls = append(assistant.ToolCalls, call)
			results = append(results, PromptMessage{Role: RoleTool, ToolCallID: call.ID, Content: use.Result})
			if err := context.Cause(gen.ctx); gen.ctx.Err() != nil {
				return total, "", err
			}
		}
		gen.mu.Lock()
		gen.rounds = append(gen.rounds, record)
		gen.mu.Unlock()
		prompt = append(append(prompt, assistant), results...)
	}
}

// toolSpecs are the tools an answer is offered.
func (g *Generator) toolSpecs() []ToolSpec {
	if g.cfg.Tools == nil {
		return nil
	}
	return g.cfg.Tools.Specs()
}

// modelRequest is one turn's request.
func (g *Generator) modelRequest(model string, prompt []PromptMessage, tools []ToolSpec) ModelRequest {
	return ModelRequest{Model: model, Messages: prompt, MaxTokens: g.cfg.MaxOutputTokens, Tools: tools, Temperature: g.cfg.Temperature}
}

// firstRequest is the request of an answer's first turn: what streamModel
// sends in round 1.
func (g *Generator) firstRequest(model string, prompt []PromptMessage) ModelRequest {
	var tools []ToolSpec
	if g.cfg.MaxToolRounds >= 1 {
		tools = g.toolSpecs()
	}
	return g.modelRequest(model, slices.Clone(prompt), tools)
}

// modelTurn is what one model turn produced.
type modelTurn struct {
	text         string
	calls        []ToolCall
	usage        Usage
	finishReason string
}

// streamTurn asks the model once and relays its text deltas, gathering
// its tool calls (and streaming the document they write).
func (gen *generation) streamTurn(prompt []PromptMessage, tools []ToolSpec) (modelTurn, error) {
	var s ModelStream
	var err error
	if gen.ahead != nil {
		// The first turn, asked while the exchange was saved, with the
		// same request (firstRequest).
		s, err = gen.ahead.take()
		gen.ahead = nil
	} else {
		s, err = gen.provider.Stream(gen.ctx, gen.g.modelRequest(gen.answer.Model, prompt, tools))
	}
	if err != nil {
		if gen.ctx.Err() != nil {
			// Stopped (or interrupted) while the provider was being asked:
			// the prompt was sent, and providers bill a prompt they read.
			return modelTurn{usage: Usage{PromptTokens: promptTokens(prompt)}}, err
		}
		// The provider refused the request: nothing was billed.
		return modelTurn{}, err
	}
	defer s.Close()
	// Close unblocks a Recv waiting on the provider when the generation
	// is stopped or interrupted.
	stopWatch := context.AfterFunc(gen.ctx, func() { s.Close() })
	defer stopWatch()
	var t modelTurn
	// The turn's text is the end of the answer's, from here on: kept once.
	from := len(gen.content())
	text := func() string { return gen.content()[from:] }
	var calls *callGatherer // made at the turn's first tool call
	for {
		d, err := s.Recv()
		if errors.Is(err, io.EOF) {
			t.text, t.usage, t.finishReason = text(), s.Usage(), s.FinishReason()
			if calls != nil {
				t.calls = calls.done()
			}
			return t, nil
		}
		t.usage = s.Usage()
		if err != nil {
			t.text, t.finishReason = text(), s.FinishReason()
			return t, err
		}
		if gen.ctx.Err() != nil {
			// Charge what was used so far (the provider's estimate).
			return modelTurn{text: text(), usage: s.Usage()}, context.Cause(gen.ctx)
		}
		if d.ToolCall != nil {
			if calls == nil {
				// Made at the turn's first call. A call when no tools
				// were offered is gathered too, but never run.
				calls = newCallGatherer(gen, tools)
			}
			if full := calls.add(*d.ToolCall); full {
				return modelTurn{text: text(), usage: s.Usage(), finishReason: "length"}, gen.tooManyEvents()
			}
			continue
		}
		if d.Text == "" {
			continue
		}
		if full := gen.appendText(CleanText(d.Text)); full {
			return modelTurn{text: text(), usage: s.Usage(), finishReason: "length"}, gen.tooManyEvents()
		}
	}
}

// appendText adds answer text and emits its delta; it reports whether the
// answer reached MaxDeltas.
func (gen *generation) appendText(text string) bool {
	gen.mu.Lock()
	gen.text.WriteString(text)
	gen.deltas++
	full := gen.deltas >= gen.g.cfg.MaxDeltas
	gen.mu.Unlock()
	gen.emit(Event{Kind: EventDelta, Text: text})
	return full
}

// countDelta counts a delta event other than text (an artifact's) against
// MaxDeltas and reports whether the answer reached it.
func (gen *generation) countDelta() bool {
	gen.mu.Lock()
	defer gen.mu.Unlock()
	gen.deltas++
	return gen.deltas >= gen.g.cfg.MaxDeltas
}

// tooManyEvents ends an answer that reached MaxDeltas.
func (gen *generation) tooManyEvents() error {
	gen.cancel(errTooManyEvents)
	return errTooManyEvents
}

// callGatherer assembles a turn's tool calls from their pieces and emits
// the events about them: a tool_call when a call starts, artifact_deltas
// as its streamed field is written.
type callGatherer struct {
	gen     *generation
	specs   map[string]ToolSpec
	calls   []*gathering // by the model's index
	byIndex map[int]*gathering
}

type gathering struct {
	call    ToolCall
	args    strings.Builder
	started bool
	field   *fieldStreamer
}

func newCallGatherer(gen *generation, tools []ToolSpec) *callGatherer {
	g := &callGatherer{gen: gen, specs: map[string]ToolSpec{}, byIndex: map[int]*gathering{}}
	for _, t := range tools {
		g.specs[t.Name] = t
	}
	return g
}

// add takes a piece of a call; it reports whether the answer reached
// MaxDeltas.
func (g *callGatherer) add(d ToolCallDelta) bool {
	c := g.byIndex[d.Index]
	if c == nil {
		c = &gathering{}
		g.byIndex[d.Index] = c
		g.calls = append(g.calls, c)
	}
	if d.ID != "" {
		c.call.ID = d.ID
	}
	if d.Name != "" {
		c.call.Name += d.Name
	}
	if !c.started && c.call.ID != "" && c.call.Name != "" {
		c.started = true
		if spec, ok := g.specs[c.call.Name]; ok && spec.StreamField != "" {
			c.field = newFieldStreamer(spec.StreamField)
		}
		g.gen.emit(Event{Kind: EventToolCall, Tool: &ToolEvent{CallID: c.call.ID, Name: c.call.Name}})
		// Arguments that came before the call's name are streamed now.
		if c.field != nil && c.args.Len() > 0 {
			if text := c.field.Feed(c.args.String()); text != "" {
				g.gen.emit(Event{Kind: EventArtifactDelta, Text: text, Tool: &ToolEvent{CallID: c.call.ID}})
			}
		}
	}
	c.args.WriteString(d.Arguments)
	if c.field != nil && c.started && d.Arguments != "" {
		if text := CleanText(c.field.Feed(d.Arguments)); text != "" {
			g.gen.emit(Event{Kind: EventArtifactDelta, Text: text, Tool: &ToolEvent{CallID: c.call.ID}})
			return g.gen.countDelta()
		}
	}
	return false
}

// done returns the calls gathered, in the model's order. A call without
// an id gets one, so its result can answer it.
func (g *callGatherer) done() []ToolCall {
	out := make([]ToolCall, 0, len(g.calls))
	for i, c := range g.calls {
		c.call.Arguments = c.args.String()
		if c.call.ID == "" {
			c.call.ID = "call_" + string(rune('a'+i%26))
		}
		out = append(out, c.call)
	}
	return out
}

// runTool runs one call through the Toolbox and emits its result event.
// A tool not among those offered, and oversized results, are the model's
// to correct, never a failed answer.
func (gen *generation) runTool(call ToolCall, offered []ToolSpec) ToolUse {
	use := ToolUse{ID: call.ID, Name: call.Name, Arguments: call.Arguments}
	var res ToolResult
	if !slices.ContainsFunc(offered, func(s ToolSpec) bool { return s.Name == call.Name }) {
		res = ToolResult{IsError: true, Content: "there is no tool named " + strconv.Quote(call.Name)}
	} else {
		res = gen.g.cfg.Tools.Call(gen.ctx, ToolContext{UserID: gen.userID, ConversationID: gen.answer.ConversationID, MessageID: gen.messageID}, call)
	}
	use.Result, use.IsError, use.Artifact = TruncateResult(res.Content, gen.g.cfg.MaxToolResultBytes), res.IsError, res.Artifact
	ev := &ToolEvent{CallID: call.ID, Name: call.Name, Artifact: res.Artifact}
	if res.IsError {
		ev.Error = use.Result
	}
	gen.emit(Event{Kind: EventToolResult, Tool: ev})
	return use
}

// TruncateResult bounds what a tool call tells the model to max bytes of
// valid UTF-8, marking the cut.
func TruncateResult(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + " [truncated]"
}

// CleanText makes model output storable: Postgres text holds neither NUL
// bytes nor invalid UTF-8, and one such answer must not fail the shared
// checkpoint statement of every answer on the instance.
func CleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
