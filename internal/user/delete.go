package user

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
)

// Deleted is what DeleteUser found still running when it deleted it.
type Deleted struct {
	// GenerationIDs are the answers that were being written.
	GenerationIDs []uuid.UUID
	// RunIDs are the agent runs that were in progress; they were asked to
	// cancel in the same transaction.
	RunIDs []uuid.UUID
}

// DeleteStore deletes a user's data.
type DeleteStore interface {
	// DeleteUser deletes, in one transaction, everything userID owns: the
	// profile, conversations with their messages and search rows,
	// artifacts with their versions, agent runs with their steps, events
	// and queued tasks, and the token usage rows. Answers and runs in
	// progress are settled by the delete itself; it returns them so their
	// instances can be told to stop. Deleting a user with nothing is not an
	// error.
	DeleteUser(ctx context.Context, userID uuid.UUID) (Deleted, error)
}

// Billing is what the user service needs of billing; billing.Service is
// one.
type Billing interface {
	// CancelSubscription cancels the user's live subscription at once; a
	// user without one is not an error.
	CancelSubscription(ctx context.Context, userID uuid.UUID) error
	// Renewal says when the user's paid plan renews next, or when a
	// canceled one ends (zero times for a plan that does neither).
	Renewal(ctx context.Context, userID uuid.UUID) (renews, ends time.Time, err error)
}

// AnswerStopper stops answers wherever they run; chat.Generator is one.
type AnswerStopper interface {
	// EndDeleted stops the generations whose answers were deleted.
	EndDeleted(ctx context.Context, generationIDs []uuid.UUID)
}

// Delete deletes everything the caller owns and stops what was running on
// it: the answers being written (through answers, after the commit, as a
// conversation's delete does) and the agent runs in progress (asked to
// cancel inside the transaction, which wakes the instance running their
// step). It is idempotent; the caller's next call starts a fresh profile.
//
// An active paid subscription is canceled first (Billing): if that fails
// nothing is deleted, so the user is never billed for an account that is
// gone.
func (s *Service) Delete(ctx context.Context, userID uuid.UUID) error {
	if s.billing != nil {
		if err := s.billing.CancelSubscription(ctx, userID); err != nil {
			return err
		}
	}
	d, err := s.store.DeleteUser(ctx, userID)
	if err != nil {
		return err
	}
	if len(d.GenerationIDs) > 0 && s.answers != nil {
		// The delete is done even if the client leaves now.
		s.answers.EndDeleted(context.WithoutCancel(ctx), d.GenerationIDs)
	}
	if s.cache != nil {
		// Cached answers hold the user's prompts' answers: gone with the
		// account, not at their TTL. A retried DeleteMe tries again.
		forget, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheForgetTimeout)
		err := s.cache.ForgetUser(forget, userID)
		cancel()
		if err != nil {
			return apperr.Wrap(err, apperr.Unavailable, "the account is deleted, but its cached answers could not be removed yet; call DeleteMe again to remove them")
		}
	}
	if s.attachments != nil {
		// The rows went with the conversations; the objects are deleted
		// after the commit, by key prefix, so none uploaded meanwhile
		// survives a retried delete.
		return s.attachments.UserDeleted(ctx, userID)
	}
	return nil
}

// cacheForgetTimeout bounds the deletion of a deleted user's cached answers.
const cacheForgetTimeout = 10 * time.Second
