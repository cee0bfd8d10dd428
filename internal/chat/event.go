package chat

import (
	"context"
	"errors"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
)

// EventKind says what an Event carries.
type EventKind string

// The kinds of generation events, in the order a generation emits them:
// started, then deltas (text, and tool calls with their artifact deltas
// and results), usage and at most one title, then exactly one of completed
// or failed.
const (
	EventStarted EventKind = "started"
	EventDelta   EventKind = "delta"
	EventUsage   EventKind = "usage"
	EventTitle   EventKind = "title"
	// EventToolCall: the model started a tool call; EventArtifactDelta:
	// the next piece of the document a call writes; EventToolResult: the
	// call's outcome (the artifact it saved, or its error).
	EventToolCall      EventKind = "tool_call"
	EventArtifactDelta EventKind = "artifact_delta"
	EventToolResult    EventKind = "tool_result"
	EventCompleted     EventKind = "completed"
	EventFailed        EventKind = "failed"
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
	// ToolCall, ArtifactDelta, ToolResult: which call (and, for a delta,
	// the text in Text).
	Tool *ToolEvent `json:"tool,omitempty"`
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

// ToolEvent describes a tool call in the events about it.
type ToolEvent struct {
	CallID string `json:"call_id"`
	Name   string `json:"name,omitempty"`
	// Result events only: the error the model was told, or the artifact
	// the call saved.
	Error    string       `json:"error,omitempty"`
	Artifact *ArtifactRef `json:"artifact,omitempty"`
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

// EventLog shares the events of live generations between instances, so
// that any instance can resume or stop any generation. internal/broker
// implements it on Redis Streams, and in memory for a single process.
type EventLog interface {
	// Write makes several writes at once, in one round trip where the log
	// allows: each appends its events, in order, to its generation's log
	// (creating the log on the first event) and then, if it says Finish,
	// marks the log complete (followers get the remaining events and then
	// see their channel close; the log expires after a retention); it
	// wakes the logs' followers. It returns one error per write, nil for a
	// write made in full; one write failing leaves the others made.
	Write(ctx context.Context, writes []LogWrite) []error
	// Follow replays the events with Seq > afterSeq and then follows live
	// ones until Finish, ctx end, or an error. The channel is closed at the
	// end; the returned func then tells why: nil after Finish, ctx.Err()
	// after ctx ended, ErrLogNotFound if the log expired meanwhile, or the
	// failure. A log that does not exist (never created, or expired)
	// answers ErrLogNotFound at once.
	Follow(ctx context.Context, generationID uuid.UUID, afterSeq int64) (<-chan Event, func() error, error)
	// Stop asks the instance that runs the generation to stop it;
	// instances ignore ids they do not run.
	Stop(ctx context.Context, generationID uuid.UUID) error
	// Stops delivers the ids of generations someone asked to stop, from any
	// instance, until ctx ends. Stops asked while no subscription is up are
	// lost (the checkpoint is the stop signal of last resort).
	Stops(ctx context.Context) (<-chan uuid.UUID, error)
}

// LogWrite is one generation's part of EventLog.Write.
type LogWrite struct {
	GenerationID uuid.UUID
	// Events are appended in order; their Seq grows from the log's last.
	Events []Event
	// Finish marks the log complete after Events.
	Finish bool
}

// ErrLogNotFound reports an event log that was never created or has
// expired.
var ErrLogNotFound = errors.New("generation event log not found")
