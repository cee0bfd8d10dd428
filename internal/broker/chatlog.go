package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
)

// ChatLog is the chat domain's event log (chat.EventLog) on a Broker: it
// encodes chat events as JSON, the wire form other instances read, and
// translates the broker's errors into the domain's.
type ChatLog struct{ b Broker }

var _ chat.EventLog = ChatLog{}

// NewChatLog returns a chat.EventLog that keeps its events in b.
func NewChatLog(b Broker) ChatLog { return ChatLog{b: b} }

// Write implements chat.EventLog with one Broker write for all of them. A
// write with an event that cannot be encoded appends none of its events
// (its finish is still made) and reports the encoding error.
func (l ChatLog) Write(ctx context.Context, writes []chat.LogWrite) []error {
	batch := make([]Write, len(writes))
	errs := make([]error, len(writes))
	// All the events' encodings share one buffer, and their Events one
	// slice, whatever the number of events. The buffer is sized for the
	// text deltas; a larger event (started, completed) makes it grow.
	n, size := 0, 0
	for _, w := range writes {
		n += len(w.Events)
		for _, ev := range w.Events {
			if plainDelta(ev) {
				size += eventOverhead + len(ev.Text)
			}
		}
	}
	all := make([]Event, 0, n)
	buf := make([]byte, 0, size)
	for i, w := range writes {
		first := len(all)
		for _, ev := range w.Events {
			start := len(buf)
			var err error
			if buf, err = appendEvent(buf, ev); err != nil {
				errs[i] = fmt.Errorf("broker: encode event %d: %w", ev.Seq, err)
				all = all[:first]
				break
			}
			all = append(all, Event{Seq: ev.Seq, Data: buf[start:len(buf):len(buf)]})
		}
		evs := all[first:len(all):len(all)]
		if errs[i] != nil {
			evs = nil
		}
		batch[i] = Write{GenerationID: w.GenerationID, Events: evs, Finish: w.Finish}
	}
	for i, err := range l.b.Write(ctx, batch) {
		if errs[i] == nil {
			errs[i] = err
		}
	}
	return errs
}

// Follow implements chat.EventLog. A corrupt entry ends the follow with an
// error, as a broken connection would.
func (l ChatLog) Follow(ctx context.Context, generationID uuid.UUID, afterSeq int64) (<-chan chat.Event, func() error, error) {
	raw, errf, err := l.b.Follow(ctx, generationID, afterSeq)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, chat.ErrLogNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	out := make(chan chat.Event)
	result := new(outcome)
	go func() {
		defer close(out)
		for be := range raw {
			ev, err := decodeEvent(be.Data)
			if err != nil {
				result.set(fmt.Errorf("broker: corrupt event %d of generation %s: %w", be.Seq, generationID, err))
				drain(raw)
				return
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				drain(raw)
				result.set(ctx.Err())
				return
			}
		}
		err := errf()
		if errors.Is(err, ErrNotFound) {
			err = chat.ErrLogNotFound
		}
		result.set(err)
	}()
	return out, result.get, nil
}

// drain reads a follow's channel to its end, which comes once its ctx
// ends or its log does, so the broker's goroutine is not left blocked.
func drain(ch <-chan Event) {
	for range ch {
	}
}

// Stop implements chat.EventLog.
func (l ChatLog) Stop(ctx context.Context, generationID uuid.UUID) error {
	return l.b.Stop(ctx, generationID)
}

// Stops implements chat.EventLog.
func (l ChatLog) Stops(ctx context.Context) (<-chan uuid.UUID, error) { return l.b.Stops(ctx) }

// encodeEvent and decodeEvent are the wire form of chat events in the
// shared log, read by other instances that resume a generation.
func encodeEvent(e chat.Event) ([]byte, error) {
	return appendEvent(make([]byte, 0, eventOverhead+len(e.Text)), e)
}

// eventOverhead is about what a delta's encoding adds to its text.
const eventOverhead = 48

func decodeEvent(data []byte) (chat.Event, error) {
	var e chat.Event
	err := json.Unmarshal(data, &e)
	return e, err
}
