package chattest

import (
	"context"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
)

// Model is a chat.Provider whose answers the test writes as it goes: every
// Stream call becomes a Turn the test takes with Next and feeds with Say,
// End or Fail. It is safe for concurrent use.
type Model struct {
	mu       sync.Mutex
	requests []chat.ModelRequest
	turns    chan *Turn
	refuse   error
	hang     bool
	asked    chan struct{} // closed and replaced on every Stream call
}

var _ chat.Provider = (*Model)(nil)

// NewModel returns a Model with no turns yet.
func NewModel() *Model { return &Model{turns: make(chan *Turn, 64), asked: make(chan struct{})} }

// Hang makes every later Stream call wait until its ctx ends, as a
// provider that has not answered yet, then fail with apperr Canceled.
func (m *Model) Hang() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hang = true
}

// WaitAsked waits until Stream has been called n times in all, or timeout.
func (m *Model) WaitAsked(n int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		got, asked := len(m.requests), m.asked
		m.mu.Unlock()
		if got >= n {
			return true
		}
		select {
		case <-asked:
		case <-deadline.C:
			return false
		}
	}
}

// Refuse makes every later Stream call fail with err before any byte.
func (m *Model) Refuse(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refuse = err
}

// Requests returns the requests so far.
func (m *Model) Requests() []chat.ModelRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.requests)
}

// Stream implements chat.Provider.
func (m *Model) Stream(ctx context.Context, req chat.ModelRequest) (chat.ModelStream, error) {
	m.mu.Lock()
	m.requests = append(m.requests, req)
	refuse, hang := m.refuse, m.hang
	close(m.asked)
	m.asked = make(chan struct{})
	m.mu.Unlock()
	if refuse != nil {
		return nil, refuse
	}
	if hang {
		<-ctx.Done()
		return nil, apperr.New(apperr.Canceled, "the request was canceled")
	}
	t := &Turn{Request: req, ctx: ctx, parts: make(chan part, 64), closed: make(chan struct{})}
	for _, msg := range req.Messages {
		t.usage.PromptTokens += int64(chat.EstimateTokens(msg.Content))
	}
	m.turns <- t
	return t, nil
}

// Next returns the next turn the generator asked for, waiting up to
// timeout; nil if none came.
func (m *Model) Next(timeout time.Duration) *Turn {
	select {
	case t := <-m.turns:
		return t
	case <-time.After(timeout):
		return nil
	}
}

// Turn is one answer being written: a chat.ModelStream on the
// generator's side, a script on the test's.
type Turn struct {
	// Request is what the generator asked for.
	Request chat.ModelRequest

	// ctx is the context Stream was called with: its end ends a waiting
	// Recv, as chat.Provider requires.
	ctx       context.Context
	parts     chan part
	closeOnce sync.Once
	closed    chan struct{}
	// Owned by the reading goroutine (Recv, Usage, FinishReason).
	usage  chat.Usage
	reason string
	err    error
}

type part struct {
	panic  bool
	text   string
	call   *chat.ToolCallDelta
	end    bool
	usage  *chat.Usage
	reason string
	err    error
}

// Say sends a delta.
func (t *Turn) Say(texts ...string) {
	for _, s := range texts {
		t.send(part{text: s})
	}
}

// End finishes the answer with the provider's usage and finish reason.
func (t *Turn) End(usage chat.Usage, reason string) {
	t.send(part{end: true, usage: &usage, reason: reason})
}

// Call sends a piece of a tool call: index names the call within the
// turn; id and name go with its first piece, arguments is the next
// fragment of its JSON arguments.
func (t *Turn) Call(index int, id, name, arguments string) {
	t.send(part{call: &chat.ToolCallDelta{Index: index, ID: id, Name: name, Arguments: arguments}})
}

// Panic makes the generator's next Recv panic, as a provider's bug would.
func (t *Turn) Panic() { t.send(part{panic: true}) }

// Fail cuts the answer with err.
func (t *Turn) Fail(err error) { t.send(part{err: err}) }

// Closed is closed when the generator closed the stream (it was stopped,
// interrupted or finished).
func (t *Turn) Closed() <-chan struct{} { return t.closed }

func (t *Turn) send(p part) {
	select {
	case t.parts <- p:
	case <-t.closed:
	}
}

// Recv implements chat.ModelStream.
func (t *Turn) Recv() (chat.Delta, error) {
	if t.err != nil {
		return chat.Delta{}, t.err
	}
	select {
	case p := <-t.parts:
		switch {
		case p.panic:
			panic("chattest: the provider panicked")
		case p.err != nil:
			t.err = p.err
			return chat.Delta{}, p.err
		case p.end:
			t.usage, t.reason, t.err = *p.usage, p.reason, io.EOF
			return chat.Delta{}, io.EOF
		case p.call != nil:
			t.usage.CompletionTokens += int64(chat.EstimateTokens(p.call.Arguments))
			return chat.Delta{ToolCall: p.call}, nil
		}
		t.usage.CompletionTokens += int64(chat.EstimateTokens(p.text))
		return chat.Delta{Text: p.text}, nil
	case <-t.closed:
		t.err = apperr.New(apperr.Canceled, "the answer was canceled")
		return chat.Delta{}, t.err
	case <-t.ctx.Done():
		t.err = apperr.New(apperr.Canceled, "the request was canceled")
		return chat.Delta{}, t.err
	}
}

// Usage implements chat.ModelStream.
func (t *Turn) Usage() chat.Usage { return t.usage }

// FinishReason implements chat.ModelStream.
func (t *Turn) FinishReason() string { return t.reason }

// Close implements chat.ModelStream.
func (t *Turn) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	return nil
}
