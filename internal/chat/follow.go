package chat

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
)

// Following an answer from anywhere: from memory when it runs on this
// instance, from the shared event log when it runs on another, and from
// the saved messages once the log has expired.

// Resume replays a generation's events after afterSeq and follows it live.
// It returns apperr NotFound for a generation that is not the user's.
func (g *Generator) Resume(ctx context.Context, userID, generationID uuid.UUID, afterSeq int64) (Stream, error) {
	if afterSeq < 0 {
		return nil, apperr.InvalidField("after_seq", "must not be negative")
	}
	answer, err := g.store.GetMessageByGeneration(ctx, userID, generationID)
	if err != nil {
		return nil, err
	}
	if err := g.addFollower(ctx, userID); err != nil {
		return nil, err
	}
	return g.follow(ctx, userID, answer, afterSeq)
}

// attach follows the answer of an earlier send with the same client id.
func (g *Generator) attach(ctx context.Context, userID, conversationID uuid.UUID, clientMessageID string) (Stream, error) {
	_, answer, err := g.store.FindExchange(ctx, userID, conversationID, clientMessageID)
	if err != nil {
		return nil, err
	}
	if err := g.addFollower(ctx, userID); err != nil {
		return nil, err
	}
	return g.follow(ctx, userID, answer, 0)
}

// logWait bounds how long a follower waits for the event log of an answer
// that just started on another instance, whose first event may not be
// mirrored yet.
const (
	logWaitTries = 20
	logWaitPause = 25 * time.Millisecond
	logWaitAge   = 5 * time.Second
)

// follow returns the events of answer's generation after afterSeq: from
// this instance if it runs here, else from the shared log, else (the log
// has expired) from the saved messages.
func (g *Generator) follow(ctx context.Context, userID uuid.UUID, answer Message, afterSeq int64) (Stream, error) {
	if gen := g.local(answer.GenerationID); gen != nil {
		return gen.subscribe(afterSeq), nil
	}
	events, errf, err := g.events.Follow(ctx, answer.GenerationID, afterSeq)
	young := !answer.Ended() && g.clock.Now().Sub(answer.CreateTime) < logWaitAge
	for try := 0; errors.Is(err, ErrLogNotFound) && young && try < logWaitTries; try++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(logWaitPause):
		}
		events, errf, err = g.events.Follow(ctx, answer.GenerationID, afterSeq)
	}
	if err == nil {
		return g.remote(userID, answer.GenerationID, events, errf, afterSeq), nil
	}
	if !errors.Is(err, ErrLogNotFound) {
		g.log.WarnContext(ctx, "event log unavailable; replaying from the database", "generation_id", answer.GenerationID, "err", err)
		if !answer.Ended() {
			// It runs on another instance, but the shared log cannot be
			// read now (Redis is down): a resume later can follow it.
			return nil, apperr.New(apperr.Unavailable, "the answer is running on another server and cannot be followed right now; resume again shortly")
		}
	}
	if !answer.Ended() {
		// Streaming, but no instance holds a log: its instance died and
		// the answer will be marked interrupted.
		return nil, apperr.New(apperr.Unavailable, "the generation is no longer running; ListMessages shows what was saved")
	}
	user, err := g.store.GetMessage(ctx, userID, answer.ParentID)
	if err != nil {
		return nil, err
	}
	return replay(user, answer, afterSeq), nil
}

// remote returns a follower of a generation that runs on another instance.
func (g *Generator) remote(userID, generationID uuid.UUID, events <-chan Event, errf func() error, afterSeq int64) *remoteStream {
	return &remoteStream{events: events, errf: errf, seq: afterSeq, saved: func(ctx context.Context) (Message, error) {
		return g.store.GetMessageByGeneration(ctx, userID, generationID)
	}}
}

// remoteStream follows a generation that runs on another instance. A log
// that ends without a terminal event (its instance lost Redis) ends with
// the saved answer instead.
type remoteStream struct {
	events <-chan Event
	errf   func() error
	saved  func(context.Context) (Message, error)
	seq    int64
	ended  bool
}

func (s *remoteStream) Next(ctx context.Context) (Event, error) {
	if s.ended {
		return Event{}, io.EOF
	}
	select {
	case ev, ok := <-s.events:
		if !ok {
			if err := s.errf(); errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return Event{}, ctx.Err()
			}
			s.ended = true
			if m, err := s.saved(ctx); err == nil && m.Ended() {
				return Event{Seq: s.seq + 1, Kind: EventCompleted, Message: &m}, nil
			}
			return Event{}, apperr.New(apperr.Unavailable, "lost the generation's event log; resume again")
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
		events = append(events, Event{Kind: EventStarted, Started: &Started{UserMessage: user, AssistantMessageID: answer.ID, GenerationID: answer.GenerationID, Model: answer.Model}})
		// The tool calls, each with its outcome (the document itself is in
		// its artifact), then the whole text.
		for _, r := range answer.ToolRounds {
			for _, u := range r.Calls {
				result := &ToolEvent{CallID: u.ID, Name: u.Name, Artifact: u.Artifact}
				if u.IsError {
					result.Error = u.Result
				}
				events = append(events,
					Event{Kind: EventToolCall, Tool: &ToolEvent{CallID: u.ID, Name: u.Name}},
					Event{Kind: EventToolResult, Tool: result})
			}
		}
		if answer.Content != "" {
			events = append(events, Event{Kind: EventDelta, Text: answer.Content})
		}
		events = append(events, Event{Kind: EventUsage, Usage: &Usage{PromptTokens: answer.Usage.PromptTokens, CompletionTokens: answer.Usage.CompletionTokens}})
	}
	events = append(events, Event{Kind: EventCompleted, Message: &answer})
	for i := range events {
		events[i].Seq = afterSeq + int64(i) + 1
	}
	return &sliceStream{events: events}
}

// sliceStream plays a fixed list of events.
type sliceStream struct{ events []Event }

func (s *sliceStream) Next(context.Context) (Event, error) {
	if len(s.events) == 0 {
		return Event{}, io.EOF
	}
	ev := s.events[0]
	s.events = s.events[1:]
	return ev, nil
}
