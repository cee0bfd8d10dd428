package chat

import (
	"context"
	"errors"
	"time"

	"github.com/parleyhq/parley/internal/apperr"
)

// Stage 4 of an answer: decide how it ended, save it, and tell followers.

// finalSaveTimeout bounds the last database write of a generation, which
// happens after the client may have left and even during shutdown.
const finalSaveTimeout = 5 * time.Second

// titleWait bounds how long a finished answer waits for its title, so the
// title can still travel in the stream.
const titleWait = 3 * time.Second

// ending is how a generation ended, from the cause of its context's end.
type ending struct {
	status Status
	// failure is what followers are told; nil for completed and stopped.
	failure *EventError
	// finishReason replaces the provider's ("" keeps it).
	finishReason string
	// byProvider: the model provider failed (worth a log line).
	byProvider bool
}

// endings maps the cause that ended a generation to its saved status and
// the error followers see. A cause not listed is a provider failure.
var endings = []struct {
	cause  error
	ending ending
}{
	{errStopped, ending{status: StatusStopped, finishReason: "stop"}},
	{errEndedElsewhere, ending{status: StatusStopped, finishReason: "stop"}},
	{errShutdown, ending{status: StatusInterrupted, failure: &EventError{
		Code: apperr.Unavailable, Message: "the server restarted during the answer; the partial answer is saved"}}},
	{errTooLong, ending{status: StatusFailed, failure: &EventError{
		Code: apperr.DeadlineExceeded, Message: "the answer took longer than the maximum generation time; the partial answer is saved"}}},
}

// endingOf classifies how the stream ended: err is what streamModel
// returned, cause the generation context's cause.
func endingOf(err, cause error) ending {
	if err == nil {
		return ending{status: StatusCompleted}
	}
	for _, e := range endings {
		if errors.Is(cause, e.cause) {
			return e.ending
		}
	}
	return ending{status: StatusFailed, failure: eventError(err), byProvider: true}
}

// finish saves the answer as it ended and emits the terminal event.
func (gen *generation) finish(usage Usage, finishReason string, err error, titled <-chan struct{}) {
	g := gen.g
	end := endingOf(err, context.Cause(gen.ctx))
	if end.byProvider {
		g.log.Warn("generation failed", "generation_id", gen.id, "model", gen.answer.Model, "err", err)
	}
	if end.finishReason != "" {
		finishReason = end.finishReason
	}
	outcome := Outcome{Content: gen.content(), Status: end.status, Model: gen.answer.Model, Usage: usage, FinishReason: finishReason}
	failure := end.failure

	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(gen.ctx), finalSaveTimeout)
	saved, saveErr := g.store.FinishMessage(saveCtx, gen.messageID, outcome)
	if apperr.IsNotFound(saveErr) {
		// Someone else ended it first (a stop that reached the database
		// from another instance): relay the answer as they saved it.
		if saved, saveErr = g.store.GetMessage(saveCtx, gen.userID, gen.messageID); saveErr == nil && failure != nil && saved.Status == StatusStopped {
			failure = nil
		}
	}
	cancel()
	if saveErr != nil {
		g.log.Error("saving the answer failed", "generation_id", gen.id, "err", saveErr)
		if failure == nil {
			failure = &EventError{Code: apperr.Unavailable, Message: "the answer could not be saved"}
		}
	}

	if err == nil {
		select {
		case <-titled:
		case <-time.After(titleWait):
		}
	}
	if failure != nil {
		gen.emit(Event{Kind: EventFailed, Error: failure})
	} else {
		gen.emit(Event{Kind: EventCompleted, Message: &saved})
	}
}

// eventError is the client-safe form of a provider error.
func eventError(err error) *EventError {
	var ae *apperr.Error
	if errors.As(err, &ae) && ae.Code != apperr.Internal {
		return &EventError{Code: ae.Code, Message: ae.Message, RetryAfter: ae.RetryAfter}
	}
	return &EventError{Code: apperr.Internal, Message: "the model provider failed; the partial answer is saved"}
}
