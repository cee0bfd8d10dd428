package chat

import (
	"context"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
)

// Stop stops a generation wherever it runs and returns the saved answer.
// Stopping an answer that already ended returns it unchanged. It returns
// apperr NotFound for a generation that is not the user's.
//
// The stop travels three ways, each a fallback for the one before: in
// memory when the generation runs here; through the event log's stop
// signal to the instance that runs it; and, when no instance answers in
// StopWait, straight to the database, where the running instance (if any)
// sees it at its next checkpoint.
func (g *Generator) Stop(ctx context.Context, userID, generationID uuid.UUID) (Message, error) {
	answer, err := g.store.GetMessageByGeneration(ctx, userID, generationID)
	if err != nil || answer.Ended() {
		return answer, err
	}
	var stream Stream
	if gen := g.local(generationID); gen != nil {
		stream = gen.subscribe(0)
		gen.stop()
	} else {
		if err := g.events.Stop(ctx, generationID); err != nil {
			g.log.WarnContext(ctx, "could not broadcast stop", "generation_id", generationID, "err", err)
		}
		// follow waits a moment for the log of an answer that has just
		// started elsewhere; without it the stop would take the database
		// path below and lose the text the running instance is saving.
		stream, _ = g.follow(ctx, userID, answer, 0)
	}
	if stream != nil {
		// Wait until the running instance has saved the stopped answer.
		waitCtx, cancel := context.WithTimeout(ctx, g.cfg.StopWait)
		for {
			ev, err := stream.Next(waitCtx)
			if err != nil || ev.Terminal() {
				break
			}
		}
		cancel()
	}
	answer, err = g.store.GetMessageByGeneration(ctx, userID, generationID)
	if err != nil || answer.Ended() {
		return answer, err
	}
	// Nobody answered the stop: the instance that ran it is gone. Keep the
	// last checkpoint as the stopped answer.
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalSaveTimeout)
	defer cancel()
	stopped, err := g.store.FinishMessage(saveCtx, answer.ID, Outcome{
		Content: answer.Content, Status: StatusStopped, Model: answer.Model, FinishReason: "stop",
		// The provider's count died with the instance: charge the prompt's
		// estimate (saved with the answer) and one of the text.
		Usage: Usage{PromptTokens: answer.Usage.PromptTokens, CompletionTokens: int64(EstimateTokens(answer.Content))},
	})
	if apperr.IsNotFound(err) {
		return g.store.GetMessageByGeneration(ctx, userID, generationID)
	}
	return stopped, err
}

// EndDeleted stops the generations of answers that were deleted with
// their conversation: here when they run here, else through the event
// log's stop signal. Their end finds the answer gone and saves nothing
// (the deletion settled it); followers are told not_found. An instance
// that misses the signal stops at its next checkpoint.
func (g *Generator) EndDeleted(ctx context.Context, generationIDs []uuid.UUID) {
	for _, id := range generationIDs {
		if gen := g.local(id); gen != nil {
			gen.cancel(errEndedElsewhere)
			continue
		}
		if err := g.events.Stop(ctx, id); err != nil {
			g.log.WarnContext(ctx, "could not broadcast the stop of a deleted answer; it stops at its next checkpoint", "generation_id", id, "err", err)
		}
	}
}
