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
			gen.emitUsage(total)
			return total, t.finishReason, nil
		}
		if prompt, err = gen.runTools(prompt, t, tools); err != nil {
			return total, "", err
		}
	}
}

// emitUsage emits the answer's usage event. It is not inlined, so that
// the event is not in streamModel's frame (streamTurn says why).
//
//go:noinline
func (gen *generation) emitUsage(total Usage) {
	gen.emit(Event{Kind: EventUsage, Usage: &total})
}

// runTools runs the calls of a turn that called tools, keeps the round,
// and returns the prompt of the next turn: this one's, then the model's
// calls and their results. It is a function of its own so that its locals
// are not in streamModel's frame while the answer waits on the model
// (streamTurn).
func (gen *generation) runTools(prompt []PromptMessage, t modelTurn, tools []ToolSpec) ([]PromptMessage, error) {
	record := ToolRound{Text: t.text}
	assistant := PromptMessage{Role: RoleAssistant, Content: t.text}
	var results []PromptMessage
	for _, call := range t.calls {
		use := gen.runTool(call, tools)
		record.Calls = append(record.Calls, use)
		assistant.ToolCalls = append(assistant.ToolCalls, call)
		results = append(results, PromptMessage{Role: RoleTool, ToolCallID: call.ID, Content: use.Result})
		if err := context.Cause(gen.ctx); gen.ctx.Err() != nil {
			return nil, err
		}
	}
	gen.mu.Lock()
	gen.rounds = append(gen.rounds, record)
	gen.mu.Unlock()
	return append(append(prompt, assistant), results...), nil
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
	s, err := gen.openTurn(prompt, tools)
	if err != nil {
		return gen.unopenedTurn(prompt, err)
	}
	defer s.Close()
	// A stop or an interruption cancels gen.ctx, the context the stream
	// was opened with, and that ends a Recv waiting on the provider
	// (Provider's contract): no watch of its own is needed here.
	// This is where an answer's goroutine spends its life, waiting in Recv
	// on the provider, so the frames down to that wait are kept small:
	// what is done once per turn, or rarely, is in calls of its own. The
	// goroutine's stack grows to 16 KiB while the answer starts; waiting,
	// it uses under a quarter of that, so the collector halves it.
	// (TestWaitingStacks holds the depth of this wait.)
	//
	// The turn's text is the end of the answer's, from here on.
	from := gen.textLen()
	var calls *callGatherer // made at the turn's first tool call
	for {
		d, err := s.Recv()
		if err != nil {
			return gen.endTurn(s, from, calls, err)
		}
		if gen.ctx.Err() != nil {
			return gen.cutTurn(s, from)
		}
		if d.ToolCall != nil {
			if calls == nil {
				// Made at the turn's first call. A call when no tools
				// were offered is gathered too, but never run.
				calls = newCallGatherer(gen, tools)
			}
			if full := calls.add(*d.ToolCall); full {
				return gen.fullTurn(s, from)
			}
			continue
		}
		if d.Text == "" {
			continue
		}
		if full := gen.appendText(CleanText(d.Text)); full {
			return gen.fullTurn(s, from)
		}
	}
}

// unopenedTurn is the turn whose stream did not open.
//
//go:noinline
func (gen *generation) unopenedTurn(prompt []PromptMessage, err error) (modelTurn, error) {
	if gen.ctx.Err() != nil {
		// Stopped (or interrupted) while the provider was being asked:
		// the prompt was sent, and providers bill a prompt they read.
		return modelTurn{usage: Usage{PromptTokens: promptTokens(prompt)}}, err
	}
	// The provider refused the request: nothing was billed.
	return modelTurn{}, err
}

// openTurn opens the turn's stream.
func (gen *generation) openTurn(prompt []PromptMessage, tools []ToolSpec) (ModelStream, error) {
	if gen.ahead != nil {
		// The first turn, asked while the exchange was saved, with the
		// same request (firstRequest).
		s, err := gen.ahead.take()
		gen.ahead = nil
		return s, err
	}
	return gen.provider.Stream(gen.ctx, gen.g.modelRequest(gen.model, prompt, tools))
}

// endTurn is the turn that Recv ended with err: io.EOF at its end, with
// the calls gathered, or what cut it.
func (gen *generation) endTurn(s ModelStream, from int, calls *callGatherer, err error) (modelTurn, error) {
	t := modelTurn{text: gen.textFrom(from), usage: s.Usage(), finishReason: s.FinishReason()}
	if !errors.Is(err, io.EOF) {
		return t, err
	}
	if calls != nil {
		t.calls = calls.done()
	}
	return t, nil
}

// cutTurn ends a turn when the answer was stopped or interrupted: it
// charges what was used so far (the provider's estimate).
func (gen *generation) cutTurn(s ModelStream, from int) (modelTurn, error) {
	return modelTurn{text: gen.textFrom(from), usage: s.Usage()}, context.Cause(gen.ctx)
}

// fullTurn ends a turn whose answer reached MaxDeltas.
func (gen *generation) fullTurn(s ModelStream, from int) (modelTurn, error) {
	t := modelTurn{text: gen.textFrom(from), usage: s.Usage(), finishReason: "length"}
	return t, gen.tooManyEvents()
}

// textLen is the length of the answer's text so far.
func (gen *generation) textLen() int {
	gen.mu.Lock()
	defer gen.mu.Unlock()
	return gen.text.Len()
}

// textFrom is the answer's text from byte from on.
func (gen *generation) textFrom(from int) string {
	return gen.content()[from:]
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

// newCallGatherer is not inlined, so that its maps are not in streamTurn's
// frame.
//
//go:noinline
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
		res = gen.g.cfg.Tools.Call(gen.ctx, ToolContext{UserID: gen.userID, ConversationID: gen.conversationID, MessageID: gen.messageID}, call)
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
