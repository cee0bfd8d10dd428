package chat

import (
	"encoding/json"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
)

// EventKind says what an Event carries.
type EventKind string

// The kinds of generation events, in the order a generation emits them:
// started, then deltas, usage and at most one title, then exactly one of
// completed or failed.
const (
	EventStarted   EventKind = "started"
	EventDelta     EventKind = "delta"
	EventUsage     EventKind = "usage"
	EventTitle     EventKind = "title"
	EventCompleted EventKind = "completed"
	EventFailed    EventKind = "failed"
)

// Event is one step of a generation. Seq grows by one from 1.
type Event struct {
	Seq  int64     `json:"seq"`
	Kind EventKind `json:"kind"`
	// Started: the exchange being answered.
	Started *Started `json:"started,omitempty"`
	// Delta: the next piece of text.
	Text string `json:"text,omitempty"`
	// Usage: tokens billed.
	Usage *Usage `json:"usage,omitempty"`
	// Title: the generated conversation title.
	Title string `json:"title,omitempty"`
	// Completed: the final assistant message.
	Message *Message `json:"message,omitempty"`
	// Failed: why the generation ended without completing.
	Error *EventError `json:"error,omitempty"`
}

// Started describes a generation's exchange.
type Started struct {
	UserMessage        Message   `json:"user_message"`
	AssistantMessageID uuid.UUID `json:"assistant_message_id"`
	GenerationID       uuid.UUID `json:"generation_id"`
	Model              string    `json:"model"`
}

// EventError is the client-safe form of the error that ended a generation.
type EventError struct {
	Code       apperr.Code `json:"code"`
	Message    string      `json:"message"`
	RetryAfter int         `json:"retry_after,omitempty"`
}

// Err turns the event error back into an application error.
func (e *EventError) Err() error {
	return &apperr.Error{Code: e.Code, Message: e.Message, RetryAfter: e.RetryAfter}
}

// Terminal reports whether the event ends its generation.
func (e Event) Terminal() bool { return e.Kind == EventCompleted || e.Kind == EventFailed }

// encodeEvent and decodeEvent are the wire form of events in the shared
// event log (Redis), read by other instances that resume a generation.
func encodeEvent(e Event) ([]byte, error) { return json.Marshal(e) }

func decodeEvent(data []byte) (Event, error) {
	var e Event
	err := json.Unmarshal(data, &e)
	return e, err
}
