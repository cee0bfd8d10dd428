package chat

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/broker"
	"github.com/parleyhq/parley/internal/llm"
)

// Stream is a follower's view of a generation's events.
type Stream interface {
	// Next returns the next event; after the terminal event (completed or
	// failed) it returns io.EOF. A ctx that ends only ends this follower,
	// never the generation.
	Next(ctx context.Context) (Event, error)
}

// finalSaveTimeout bounds the last database write of a run, which happens
// after the client may have left and even during shutdown.
const finalSaveTimeout = 5 * time.Second

// titleWait bounds how long a finished answer waits for its title, so the
// title can still travel in the stream.
const titleWait = 3 * time.Second

// run is one generation running on this instance. Its events are kept in
// memory for local followers (no encoding, no round trip) and mirrored to
// the shared event log for followers on other instances.
type run struct {
	g        *Generator
	userID   uuid.UUID
	user     Message
	answer   Message
	xc       ExchangeContext
	prompt   []llm.Message
	provider llm.Provider

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	events  []Event
	wake    chan struct{} // closed and replaced on every new event
	done    bool
	text    strings.Builder
	saved   int // length of the text last checkpointed
	mirrorW sync.WaitGroup
}

func (g *Generator) newRun(userID uuid.UUID, user, answer Message, xc ExchangeContext, prompt []llm.Message, provider llm.Provider) *run {
	ctx, cancelTimeout := context.WithTimeoutCause(g.base, g.cfg.MaxDuration, errTooLong)
	ctx, cancel := context.WithCancelCause(ctx)
	r := &run{
		g: g, userID: userID, user: user, answer: answer, xc: xc, prompt: prompt, provider: provider,
		ctx: ctx, cancel: func(cause error) { cancel(cause); cancelTimeout() },
		wake: make(chan struct{}),
	}
	g.mu.Lock()
	g.runs[answer.GenerationID] = r
	g.mu.Unlock()
	g.wg.Add(1)
	r.mirrorW.Add(1)
	go r.mirrorLoop()
	r.emit(Event{Kind: EventStarted, Started: &Started{
		UserMessage: user, AssistantMessageID: answer.ID, GenerationID: answer.GenerationID, Model: answer.Model,
	}})
	go r.run()
	return r
}

var errTooLong = errors.New("generation took longer than the maximum generation time")

// errEndedElsewhere cancels a run whose answer was ended by someone else: a
// stop that reached the database but not this instance, or a deletion.
var errEndedElsewhere = errors.New("answer ended elsewhere")

func (r *run) stop() { r.cancel(errStopped) }

// emit assigns the next seq and publishes the event to local followers
// and the mirror; after the terminal event it drops anything else. It
// never waits: the mirror reads the same list at its own pace.
func (r *run) emit(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return
	}
	ev.Seq = int64(len(r.events)) + 1
	r.events = append(r.events, ev)
	close(r.wake)
	r.wake = make(chan struct{})
	r.done = ev.Terminal()
}

// pending returns the events after the first sent, whether the run has
// ended, and a channel closed at the next event. Events are never changed
// once appended, so the returned slice may be read without the lock.
func (r *run) pending(sent int) ([]Event, bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.events[sent:], r.done, r.wake
}

// mirrorLoop copies the run's events to the shared log, in order, off the
// hot path. It writes what has gathered within mirrorDelay in one round
// trip; the first event (a remote resume may be waiting for the log to
// exist) and the last one go out at once.
func (r *run) mirrorLoop() {
	defer r.mirrorW.Done()
	base := context.WithoutCancel(r.ctx)
	sent, healthy := 0, true
	batch := make([]broker.Event, 0, mirrorBatch)
	for healthy {
		evs, done, wake := r.pending(sent)
		if len(evs) == 0 {
			if done {
				break
			}
			<-wake
			continue
		}
		if evs[0].Seq > 1 && !evs[len(evs)-1].Terminal() && len(evs) < mirrorBatch {
			deadline := time.NewTimer(mirrorDelay)
		gather:
			for {
				select {
				case <-deadline.C:
					break gather
				case <-wake:
					evs, done, wake = r.pending(sent)
					if done || len(evs) >= mirrorBatch {
						break gather
					}
				}
			}
			deadline.Stop()
			evs, _, _ = r.pending(sent)
		}
		evs = evs[:min(len(evs), mirrorBatch)]
		batch = batch[:0]
		var err error
		for _, ev := range evs {
			var data []byte
			if data, err = encodeEvent(ev); err != nil {
				break
			}
			batch = append(batch, broker.Event{Seq: ev.Seq, Data: data})
		}
		if err == nil {
			ctx, cancel := context.WithTimeout(base, mirrorTimeout)
			err = r.g.events.Append(ctx, r.answer.GenerationID, batch...)
			cancel()
		}
		if err != nil {
			// Local followers are unaffected. The log stops here; remote
			// followers reach its end without a terminal event and read
			// the saved answer instead (remoteStream).
			r.g.log.Warn("event log append failed; remote followers will read the saved answer", "generation_id", r.answer.GenerationID, "err", err)
			healthy = false
		}
		sent += len(evs)
	}
	if !healthy {
		// Let the run finish before the log is marked finished.
		for {
			_, done, wake := r.pending(sent)
			if done {
				break
			}
			<-wake
		}
	}
	ctx, cancel := context.WithTimeout(base, mirrorTimeout)
	defer cancel()
	if err := r.g.events.Finish(ctx, r.answer.GenerationID); err != nil {
		r.g.log.Warn("event log finish failed", "generation_id", r.answer.GenerationID, "err", err)
	}
}

// mirrorTimeout bounds one write to the shared event log.
const mirrorTimeout = 2 * time.Second

// mirrorBatch caps the events written to the shared log in one round trip.
const mirrorBatch = 64

// mirrorDelay is how long the mirror gathers events before it writes them:
// remote followers see events up to this much later, in exchange for one
// Redis round trip per answer every mirrorDelay instead of one per token.
// Local followers (the client that sent the message) are not delayed.
const mirrorDelay = 50 * time.Millisecond

// subscribe returns a follower that starts after afterSeq.
func (r *run) subscribe(afterSeq int64) Stream { return &localStream{r: r, next: afterSeq} }

type localStream struct {
	r    *run
	next int64 // seq of the last event returned
}

func (s *localStream) Next(ctx context.Context) (Event, error) {
	for {
		s.r.mu.Lock()
		if s.next < int64(len(s.r.events)) {
			ev := s.r.events[s.next]
			s.next++
			s.r.mu.Unlock()
			return ev, nil
		}
		done, wake := s.r.done, s.r.wake
		s.r.mu.Unlock()
		if done {
			return Event{}, io.EOF
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// run asks the model and relays its answer until it ends, then saves it.
func (r *run) run() {
	g := r.g
	defer g.wg.Done()
	defer func() {
		g.mu.Lock()
		delete(g.runs, r.answer.GenerationID)
		g.mu.Unlock()
	}()
	defer r.cancel(nil)

	titleDone := r.startTitle()
	g.checkpointsOnce.Do(func() { go g.checkpointLoop() })

	usage, finishReason, err := r.stream()

	final := Final{Content: r.content(), Model: r.answer.Model, Usage: usage, FinishReason: finishReason, Status: StatusCompleted}
	var failure *EventError
	cause := context.Cause(r.ctx)
	switch {
	case err == nil:
	case errors.Is(cause, errStopped), errors.Is(cause, errEndedElsewhere):
		final.Status, final.FinishReason = StatusStopped, "stop"
	case errors.Is(cause, errShutdown):
		final.Status = StatusInterrupted
		failure = &EventError{Code: apperr.Unavailable, Message: "the server restarted during the answer; the partial answer is saved"}
	case errors.Is(cause, errTooLong):
		final.Status = StatusFailed
		failure = &EventError{Code: apperr.DeadlineExceeded, Message: "the answer took longer than the maximum generation time; the partial answer is saved"}
	default:
		final.Status = StatusFailed
		failure = eventError(err)
		g.log.Warn("generation failed", "generation_id", r.answer.GenerationID, "model", r.answer.Model, "err", err)
	}
	if final.Status != StatusCompleted && final.Usage == (Usage{}) {
		final.Usage = usage
	}

	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), finalSaveTimeout)
	saved, saveErr := g.store.FinishMessage(saveCtx, r.answer.ID, final)
	if apperr.IsNotFound(saveErr) {
		// Someone else ended it first (a stop that reached the database
		// from another instance): relay the answer as they saved it.
		if saved, saveErr = g.store.GetMessage(saveCtx, r.userID, r.answer.ID); saveErr == nil && failure != nil && saved.Status == StatusStopped {
			failure = nil
		}
	}
	cancel()
	if saveErr != nil {
		g.log.Error("saving the answer failed", "generation_id", r.answer.GenerationID, "err", saveErr)
		if failure == nil {
			failure = &EventError{Code: apperr.Unavailable, Message: "the answer could not be saved"}
		}
	}

	if err == nil {
		select {
		case <-titleDone:
		case <-time.After(titleWait):
		}
	}
	if failure != nil {
		r.emit(Event{Kind: EventFailed, Error: failure})
	} else {
		r.emit(Event{Kind: EventCompleted, Message: &saved})
	}
	r.mirrorW.Wait()
}

// stream relays deltas until the answer ends and returns usage and finish
// reason, or the error that cut it.
func (r *run) stream() (Usage, string, error) {
	req := llm.Request{Model: r.answer.Model, Messages: r.prompt, MaxTokens: r.g.cfg.MaxOutputTokens}
	s, err := r.provider.Stream(r.ctx, req)
	if err != nil {
		return Usage{}, "", err
	}
	defer s.Close()
	stopWatch := context.AfterFunc(r.ctx, func() { s.Close() })
	defer stopWatch()
	for {
		text, err := s.Recv()
		if errors.Is(err, io.EOF) {
			u := s.Usage()
			usage := Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens}
			r.emit(Event{Kind: EventUsage, Usage: &usage})
			return usage, s.FinishReason(), nil
		}
		if err != nil {
			u := s.Usage()
			return Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens}, s.FinishReason(), err
		}
		if r.ctx.Err() != nil {
			// Charge what was used so far (the provider's estimate).
			u := s.Usage()
			return Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens}, "", context.Cause(r.ctx)
		}
		if text == "" {
			continue
		}
		// Postgres text holds neither NUL bytes nor invalid UTF-8, and one
		// such answer must not fail the shared checkpoint statement.
		text = strings.ReplaceAll(strings.ToValidUTF8(text, "\uFFFD"), "\x00", "\uFFFD")
		r.mu.Lock()
		r.text.WriteString(text)
		r.mu.Unlock()
		r.emit(Event{Kind: EventDelta, Text: text})
	}
}

func (r *run) content() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.text.String()
}

// checkpointLoop saves, about once per interval, what every answer running
// on this instance has so far, in one write for all of them: database
// writes per answer are one per interval, never one per token, and per
// instance they stay one per interval however many answers run. An answer
// the database says has ended elsewhere (a stop that reached only the
// database, or a deletion) is canceled here: the database is the stop
// signal of last resort. It runs until shutdown.
func (g *Generator) checkpointLoop() {
	ticker := time.NewTicker(g.cfg.CheckpointInterval)
	defer ticker.Stop()
	for {
		select {
		case <-g.base.Done():
			return
		case <-ticker.C:
		}
		g.mu.Lock()
		runs := make([]*run, 0, len(g.runs))
		for _, r := range g.runs {
			runs = append(runs, r)
		}
		g.mu.Unlock()
		var batch []Checkpoint
		var pending []*run
		for _, r := range runs {
			r.mu.Lock()
			if r.text.Len() != r.saved {
				batch = append(batch, Checkpoint{MessageID: r.answer.ID, Content: r.text.String()})
				pending = append(pending, r)
			}
			r.mu.Unlock()
		}
		if len(batch) == 0 {
			continue
		}
		streaming, err := g.checkpoint(batch)
		if err != nil {
			g.log.Warn("checkpoint failed", "answers", len(batch), "err", err)
			continue
		}
		still := make(map[uuid.UUID]bool, len(streaming))
		for _, id := range streaming {
			still[id] = true
		}
		for i, r := range pending {
			if !still[r.answer.ID] {
				r.cancel(errEndedElsewhere)
				continue
			}
			r.mu.Lock()
			r.saved = len(batch[i].Content)
			r.mu.Unlock()
		}
	}
}

// checkpoint writes a batch in one statement; if that fails, it writes the
// answers one by one, so one answer the database refuses cannot keep every
// other answer of the instance from being saved.
func (g *Generator) checkpoint(batch []Checkpoint) ([]uuid.UUID, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(g.base), finalSaveTimeout)
	defer cancel()
	streaming, err := g.store.CheckpointMessages(ctx, batch)
	if err == nil || len(batch) == 1 {
		return streaming, err
	}
	streaming = streaming[:0]
	var failed error
	for _, c := range batch {
		ids, err := g.store.CheckpointMessages(ctx, []Checkpoint{c})
		if err != nil {
			failed = err
			// Unknown, not ended: keep the run going.
			streaming = append(streaming, c.MessageID)
			continue
		}
		streaming = append(streaming, ids...)
	}
	if failed != nil {
		g.log.Warn("checkpoint of one answer failed", "err", failed)
	}
	return streaming, nil
}

// startTitle writes a title for a conversation's first exchange, beside
// the answer so the first token is not delayed. The channel closes when done.
func (r *run) startTitle() <-chan struct{} {
	done := make(chan struct{})
	if r.g.cfg.Titler == nil || r.xc.Title != "" || len(r.xc.Branch) > 0 || r.user.ParentID != uuid.Nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		// Not canceled by a stop (the title is still wanted), but by shutdown.
		ctx, cancel := context.WithTimeout(r.g.base, 20*time.Second)
		defer cancel()
		title, err := r.g.cfg.Titler.Title(ctx, r.answer.Model, r.user.Content)
		if err != nil || title == "" {
			if err != nil {
				r.g.log.Warn("title generation failed", "generation_id", r.answer.GenerationID, "err", err)
			}
			return
		}
		set, err := r.g.store.SetTitleIfEmpty(ctx, r.userID, r.answer.ConversationID, title)
		if err != nil || !set {
			return
		}
		r.emit(Event{Kind: EventTitle, Title: title})
	}()
	return done
}

// eventError is the client-safe form of a provider error.
func eventError(err error) *EventError {
	var ae *apperr.Error
	if errors.As(err, &ae) && ae.Code != apperr.Internal {
		return &EventError{Code: ae.Code, Message: ae.Message, RetryAfter: ae.RetryAfter}
	}
	return &EventError{Code: apperr.Internal, Message: "the model provider failed; the partial answer is saved"}
}

// remoteStream follows a generation that runs on another instance. A log
// that ends without a terminal event (its instance lost Redis) ends with
// the saved answer instead, read through final.
type remoteStream struct {
	events <-chan broker.Event
	errf   func() error
	final  func(context.Context) (Message, error)
	seq    int64
	ended  bool
}

func (s *remoteStream) Next(ctx context.Context) (Event, error) {
	if s.ended {
		return Event{}, io.EOF
	}
	select {
	case be, ok := <-s.events:
		if !ok {
			if err := s.errf(); errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return Event{}, ctx.Err()
			}
			s.ended = true
			if m, err := s.final(ctx); err == nil && m.Final() {
				return Event{Seq: s.seq + 1, Kind: EventCompleted, Message: &m}, nil
			}
			return Event{}, apperr.New(apperr.Unavailable, "lost the generation's event log; resume again")
		}
		ev, err := decodeEvent(be.Data)
		if err != nil {
			return Event{}, apperr.Wrap(err, apperr.Internal, "corrupt generation event")
		}
		s.seq, s.ended = ev.Seq, ev.Terminal()
		return ev, nil
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

// replay rebuilds a finished generation's events from the saved messages,
// once its live log has expired. A client that saw part of the stream
// (afterSeq > 0) gets only the final message, which replaces what it has.
func replay(user, answer Message, afterSeq int64) Stream {
	var events []Event
	if afterSeq == 0 {
		events = append(events,
			Event{Kind: EventStarted, Started: &Started{UserMessage: user, AssistantMessageID: answer.ID, GenerationID: answer.GenerationID, Model: answer.Model}},
			Event{Kind: EventDelta, Text: answer.Content},
			Event{Kind: EventUsage, Usage: &Usage{PromptTokens: answer.Usage.PromptTokens, CompletionTokens: answer.Usage.CompletionTokens}},
		)
	}
	events = append(events, Event{Kind: EventCompleted, Message: &answer})
	for i := range events {
		events[i].Seq = afterSeq + int64(i) + 1
	}
	return &sliceStream{events: events}
}

type sliceStream struct{ events []Event }

func (s *sliceStream) Next(context.Context) (Event, error) {
	if len(s.events) == 0 {
		return Event{}, io.EOF
	}
	ev := s.events[0]
	s.events = s.events[1:]
	return ev, nil
}
