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

// shutdownFailure tells followers of an answer the server interrupted.
var shutdownFailure = &EventError{Code: apperr.Unavailable, Message: "the server restarted during the answer; the partial answer is saved"}

// errDeleted tells followers of an answer whose conversation was deleted.
var errDeleted = &EventError{Code: apperr.NotFound, Message: "the conversation was deleted during the answer"}

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
	{errShutdown, ending{status: StatusInterrupted, failure: shutdownFailure}},
	{errTooManyEvents, ending{status: StatusCompleted, finishReason: "length"}},
	{errTooLong, ending{status: StatusFailed, failure: &EventError{
		Code: apperr.DeadlineExceeded, Message: "the answer took longer than the maximum generation time; the partial answer is saved"}}},
}

// endingOf classifies how the stream ended: err is what streamModel
// returned, cause the generation context's cause.
func endingOf(err, cause error) ending {
	if err == nil {
		return ending{status: StatusCompleted}
	}
	if errors.Is(err, errPanic) {
		return ending{status: StatusFailed, failure: &EventError{Code: apperr.Internal, Message: "internal error; the partial answer is saved"}}
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
		g.log.Warn("generation failed", "generation_id", gen.id, "model", gen.model, "err", err)
	}
	if end.finishReason != "" {
		finishReason = end.finishReason
	}
	outcome := Outcome{Content: gen.content(), Status: end.status, Model: gen.model, Usage: usage, FinishReason: finishReason, ToolRounds: gen.toolRounds(),
		Cached: gen.cached != nil}
	failure := end.failure

	saved, interrupted, saveErr := gen.save(outcome)
	if interrupted && failure == nil {
		failure = shutdownFailure
	}
	if apperr.IsNotFound(saveErr) {
		// Someone else ended it first (a stop that reached the database
		// from another instance): relay the answer as they saved it.
		saveCtx, cancel := context.WithTimeout(context.WithoutCancel(gen.ctx), finalSaveTimeout)
		if saved, saveErr = g.store.GetMessage(saveCtx, gen.userID, gen.messageID); saveErr == nil && failure != nil && saved.Status == StatusStopped {
			failure = nil
		}
		cancel()
		if apperr.IsNotFound(saveErr) {
			// The conversation was deleted meanwhile; its deletion
			// released what the answer held.
			g.log.Info("answer's conversation deleted during the answer", "generation_id", gen.id)
			failure, saveErr = errDeleted, nil
		}
	}
	if saveErr != nil {
		g.log.Error("saving the answer failed; the sweep will mark it interrupted", "generation_id", gen.id, "err", saveErr)
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

// save writes the answer's end. A failed write is retried with backoff
// (doubling from SaveRetry, at most saveRetryMax apart) while the
// generation's time allows, at least finalSaveTimeout: a database blip must
// not lose the text since the last checkpoint, nor the real usage. When the
// process must exit meanwhile, one last attempt saves the answer as
// interrupted with all the text it has; interrupted then reports it. It
// returns apperr NotFound when the answer was already ended (or deleted).
func (gen *generation) save(o Outcome) (saved Message, interrupted bool, err error) {
	g := gen.g
	until := gen.deadline
	if minimum := time.Now().Add(finalSaveTimeout); until.Before(minimum) {
		until = minimum
	}
	backoff := g.cfg.SaveRetry
	for attempt := 1; ; attempt++ {
		saved, err = gen.saveOnce(o)
		if err == nil || apperr.IsNotFound(err) || interrupted || g.exit.Err() != nil || time.Now().Add(backoff).After(until) {
			return saved, interrupted, err
		}
		g.log.Warn("saving the answer failed; retrying", "generation_id", gen.id, "attempt", attempt, "retry_in", backoff.String(), "err", err)
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-g.base.Done():
			// The process is exiting: no time for more backoff.
			o.Status, interrupted = StatusInterrupted, true
		}
		timer.Stop()
		backoff = min(2*backoff, saveRetryMax)
	}
}

// saveOnce is one attempt at the final save, bounded by finalSaveTimeout
// and cut when the shutdown's deadline passes.
func (gen *generation) saveOnce(o Outcome) (Message, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(gen.ctx), finalSaveTimeout)
	defer cancel()
	stop := context.AfterFunc(gen.g.exit, cancel)
	defer stop()
	return gen.g.store.FinishMessage(ctx, gen.messageID, o)
}

// saveRetryMax caps the wait between two attempts at the final save.
const saveRetryMax = 2 * time.Second
