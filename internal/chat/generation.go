package chat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
)

// Stream is a follower's view of a generation's events.
type Stream interface {
	// Next returns the next event; after the terminal event (completed or
	// failed) it returns io.EOF. A ctx that ends only ends this follower,
	// never the generation.
	Next(ctx context.Context) (Event, error)
}

// BufferedStream is a Stream that can tell whether its next event is
// ready: the RPC relay then sends the events of a follower that is behind
// without flushing the connection after each one.
type BufferedStream interface {
	Stream
	// Buffered reports whether Next would return an event without
	// waiting, as of the last call of Next. A stale false is allowed.
	Buffered() bool
}

// generation is one answer being written on this instance. Its events are
// kept in memory for local followers (no encoding, no round trip) and
// mirrored to the shared event log for followers on other instances.
type generation struct {
	g  *Generator
	id uuid.UUID // the generation id: events, stop and resume use it
	// messageID is the assistant message the generation writes: the
	// database uses it.
	messageID uuid.UUID
	// model, conversationID and createTime are the answer's, as first
	// saved. Only these fields of the answer and of the user's message are
	// kept: a generation lives as long as its answer, held by every
	// stream that follows it (the whole messages are in its started event).
	model          string
	conversationID uuid.UUID
	createTime     time.Time
	userID         uuid.UUID
	// wantsTitle is set when the exchange is a conversation's first and
	// the conversation has no title yet; titleFrom is the user's message
	// the title is written from.
	wantsTitle bool
	titleFrom  string
	prompt     []PromptMessage
	provider   Provider
	// ahead is the first turn's request, sent while the exchange was
	// saved; nil when it was not (see overlap.go). The first turn takes it.
	ahead *askedAhead
	// cacheKey names the answer in the response cache ("" when answers
	// are not cached); cached is the answer found there, relayed instead
	// of asking the model (see cache.go).
	cacheKey string
	cached   *CachedAnswer

	ctx      context.Context
	cancel   context.CancelCauseFunc
	deadline time.Time // when MaxDuration runs out

	mu     sync.Mutex
	events []Event
	wake   chan struct{} // closed and replaced at the next event once a follower waits on it
	waited bool          // wake was handed to a follower with nothing to read
	done   bool          // the terminal event was emitted
	text   strings.Builder
	deltas int         // delta events emitted
	rounds []ToolRound // turns that called tools, with their results
	saved  int         // length of the text last checkpointed

	// mirror is the generation's place in the Generator's mirror
	// (mirror.go); mirrored is closed once its log is finished.
	mirror   mirrorState
	mirrored chan struct{}
}

var errTooLong = errors.New("generation took longer than the maximum generation time")

// errTooManyEvents ends an answer that reached MaxDeltas: its in-memory
// event list is bounded, and the answer is cut as a max-tokens limit cuts it.
var errTooManyEvents = errors.New("answer reached the most deltas one answer may have")

// errStopped cancels a generation that a user stopped.
var errStopped = errors.New("stopped by the user")

// errEndedElsewhere cancels a generation whose answer was ended by someone
// else: a stop that reached the database but not this instance, or a
// deletion.
var errEndedElsewhere = errors.New("answer ended elsewhere")

// runContext is the context of a generation, made before its exchange is
// saved so that a request asked ahead runs under it.
type runContext struct {
	ctx      context.Context
	cancel   func(error)
	deadline time.Time
}

func (g *Generator) newRunContext(request context.Context) runContext {
	base := g.base
	if g.cfg.Carry != nil {
		base = g.cfg.Carry(request, base)
	}
	// One cancel context, its time limit a timer: a timeout context under
	// a cancel context would be two contexts and a child map more, for the
	// whole of every answer's life.
	ctx, cancel := context.WithCancelCause(base)
	limit := time.AfterFunc(g.cfg.MaxDuration, func() { cancel(errTooLong) })
	return runContext{ctx: ctx, cancel: func(cause error) { cancel(cause); limit.Stop() }, deadline: time.Now().Add(g.cfg.MaxDuration)}
}

func (g *Generator) newGeneration(userID uuid.UUID, userMessage, answer Message, p prepared, rc runContext, ahead *askedAhead) *generation {
	gen := &generation{
		g: g, id: answer.GenerationID, messageID: answer.ID,
		model: answer.Model, conversationID: answer.ConversationID, createTime: answer.CreateTime,
		userID: userID, prompt: p.prompt, provider: p.provider,
		ctx: rc.ctx, cancel: rc.cancel, deadline: rc.deadline, ahead: ahead,
		wake: make(chan struct{}), mirrored: make(chan struct{}),
	}
	if g.cfg.Titler != nil && p.xc.Title == "" && len(p.xc.Branch) == 0 && userMessage.ParentID == uuid.Nil {
		gen.wantsTitle, gen.titleFrom = true, userMessage.Content
	}
	gen.emit(Event{Kind: EventStarted, Started: &Started{
		UserMessage: userMessage, AssistantMessageID: answer.ID, GenerationID: answer.GenerationID, Model: answer.Model,
	}})
	return gen
}

// launch hands the generation to the mirror, its first event at once, and
// starts the model stream. The generation must be registered.
func (gen *generation) launch() {
	gen.g.checkpointsOnce.Do(gen.g.startCheckpoints)
	gen.mu.Lock()
	gen.mirror.launched = true
	gen.mu.Unlock()
	gen.g.signalMirror(mirrorSignal{gen: gen, urgent: true})
	go gen.run()
}

// run asks the model, relays its answer until it ends, and saves it. A
// panic anywhere on the way (a provider's bug, ours) fails this answer
// only: it is logged with its stack, the answer is saved as failed with
// the text it has, and the process goes on serving.
func (gen *generation) run() {
	defer gen.g.unregister(gen)
	defer gen.cancel(nil)
	defer func() { <-gen.mirrored }()
	defer func() {
		if p := recover(); p != nil {
			gen.g.log.Error("panic in a generation", "generation_id", gen.id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			gen.finishAfterPanic()
		}
	}()
	titled := gen.startTitle()
	// The title belongs to the answer's life: Shutdown waits for it too.
	defer func() { <-titled }()
	usage, finishReason, err := gen.streamModel()
	gen.keepAnswer(finishReason, err)
	gen.finish(usage, finishReason, err, titled)
}

// finishAfterPanic saves a generation that panicked as failed; should that
// panic too, followers are still told, and the sweep ends the answer.
func (gen *generation) finishAfterPanic() {
	defer func() {
		if p := recover(); p != nil {
			gen.g.log.Error("panic while saving a generation that panicked", "generation_id", gen.id, "panic", fmt.Sprint(p))
			gen.emit(Event{Kind: EventFailed, Error: &EventError{Code: apperr.Internal, Message: "internal error"}})
		}
	}()
	gen.finish(gen.recoveredUsage(), "", errPanic, closedChan)
}

// errPanic ends a generation that panicked; followers see internal.
var errPanic = errors.New("generation panicked")

// closedChan is a channel that never blocks a receive.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// recoveredUsage estimates what a generation that panicked used: its
// prompt and the text it has.
func (gen *generation) recoveredUsage() Usage {
	return Usage{PromptTokens: promptTokens(gen.prompt), CompletionTokens: int64(EstimateTokens(gen.content()))}
}

func (gen *generation) stop() { gen.cancel(errStopped) }

// emit assigns the next seq and publishes the event to local followers
// and the mirror; after the terminal event it drops anything else. It
// never waits: the mirror reads the same list at its own pace, and is
// told only when the answer's events start gathering, fill a batch or end.
func (gen *generation) emit(ev Event) {
	gen.mu.Lock()
	if gen.done {
		gen.mu.Unlock()
		return
	}
	ev.Seq = int64(len(gen.events)) + 1
	gen.events = append(gen.events, ev)
	if gen.waited {
		close(gen.wake)
		gen.wake, gen.waited = make(chan struct{}), false
	}
	gen.done = ev.Terminal()
	var signal bool
	var urgent bool
	if gen.mirror.launched {
		unsent := len(gen.events) - gen.mirror.taken
		urgent = gen.done || unsent == mirrorBatch
		signal = urgent || unsent == 1
	}
	gen.mu.Unlock()
	if signal {
		gen.g.signalMirror(mirrorSignal{gen: gen, urgent: urgent, at: time.Now()})
	}
}

// wakeFollowers wakes the followers waiting for the next event, as emit
// does; they find no event and look at their contexts again.
func (gen *generation) wakeFollowers() {
	gen.mu.Lock()
	defer gen.mu.Unlock()
	if gen.waited {
		close(gen.wake)
		gen.wake, gen.waited = make(chan struct{}), false
	}
}

// pending returns the events after the first sent and whether the
// generation has ended; when there are none, also a channel closed at the
// next event (nil otherwise, so emit makes a new channel only for events
// someone waited for). Events are never changed once appended, so the
// returned slice may be read without the lock.
func (gen *generation) pending(sent int) ([]Event, bool, <-chan struct{}) {
	gen.mu.Lock()
	defer gen.mu.Unlock()
	if sent >= len(gen.events) {
		gen.waited = true
		return nil, gen.done, gen.wake
	}
	return gen.events[sent:], gen.done, nil
}

// toolRounds returns the turns that called tools so far.
func (gen *generation) toolRounds() []ToolRound {
	gen.mu.Lock()
	defer gen.mu.Unlock()
	return slices.Clone(gen.rounds)
}

// content is the answer's text so far.
func (gen *generation) content() string {
	gen.mu.Lock()
	defer gen.mu.Unlock()
	return gen.text.String()
}

// Buffered implements BufferedStream.
func (s *localStream) Buffered() bool { return s.buffered }

// subscribe returns a follower that starts after afterSeq.
func (gen *generation) subscribe(afterSeq int64) Stream {
	return &localStream{gen: gen, next: afterSeq}
}

// localStream follows a generation running on this instance.
type localStream struct {
	gen      *generation
	next     int64 // seq of the last event returned
	buffered bool  // more events were ready when Next returned
	// watching is the Done channel of the context whose end wakes Next
	// (wakeOnDone), and unwatch undoes that.
	watching <-chan struct{}
	unwatch  func() bool
}

func (s *localStream) Next(ctx context.Context) (Event, error) {
	for {
		events, done, wake := s.gen.pending(int(s.next))
		if len(events) > 0 {
			s.next++
			s.buffered = len(events) > 1
			return events[0], nil
		}
		if done {
			s.stopWatching()
			return Event{}, io.EOF
		}
		if err := ctx.Err(); err != nil {
			s.stopWatching()
			return Event{}, err
		}
		// A stream's handler spends its life in this wait, so it is a plain
		// receive rather than a select, whose frame is larger (relay in
		// internal/rpc says why that matters): the end of ctx wakes it
		// through wakeOnDone instead.
		if d := ctx.Done(); d != s.watching {
			s.wakeOnDone(ctx, d)
		}
		<-wake
	}
}

// wakeOnDone has the end of ctx (whose Done channel is done) wake Next's
// wait, in place of the context Next waited with before.
func (s *localStream) wakeOnDone(ctx context.Context, done <-chan struct{}) {
	s.stopWatching()
	s.watching = done
	s.unwatch = context.AfterFunc(ctx, s.gen.wakeFollowers)
}

// stopWatching undoes wakeOnDone, when Next returns for good (the end of
// the stream, or of its context), so that the context does not keep the
// generation.
func (s *localStream) stopWatching() {
	if s.unwatch != nil {
		s.unwatch()
		s.watching, s.unwatch = nil, nil
	}
}
