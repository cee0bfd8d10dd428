package chat

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/parleyhq/parley/internal/apperr"

	"github.com/google/uuid"
)

// Stage 2 of an answer: check the user's plan, save the exchange with its
// quota reservation in one statement, and launch the generation. The first
// event (started) is ready before start returns; the model is asked in the
// generation's own goroutine (stream.go).

// errNotSaved cancels a generation whose exchange was not saved.
var errNotSaved = errors.New("the exchange was not saved")

// errDraining refuses new answers once the instance is shutting down, so
// the client retries on another one.
var errDraining = apperr.New(apperr.Unavailable, "the server is restarting; send the message again")

// start saves p's exchange (reserving its tokens) and launches its generation.
func (g *Generator) start(ctx context.Context, userID uuid.UUID, p prepared) (Stream, error) {
	x := p.exchange
	x.CreateTime = g.clock.Now().UTC().Truncate(time.Microsecond)
	x.QuotaTokens, x.MaxActive = math.MaxInt64, g.cfg.MaxConcurrent
	var quota int64
	if g.cfg.Plans != nil {
		pl, err := g.cfg.Plans.PlanOf(ctx, userID)
		if err != nil {
			return nil, err
		}
		if !pl.AllowsModel(x.Model) {
			return nil, apperr.New(apperr.PermissionDenied, "model %q is not included in the %s plan", x.Model, pl.Name)
		}
		if pl.MonthlyTokens > 0 {
			x.QuotaTokens, quota = pl.MonthlyTokens, pl.MonthlyTokens
		}
	}
	x.PromptTokens = promptTokens(p.prompt)
	x.ReserveTokens = int64(g.cfg.OutputReserve) + x.PromptTokens
	if err := g.admit(); err != nil {
		return nil, err
	}
	rc := g.newRunContext(ctx)
	var ahead *askedAhead
	// A send retried after its first attempt was saved carries a key the
	// loaded branch already holds: its insert will be refused and attach
	// to that attempt, so the model is not asked for it.
	retried := retriedInBranch(p.xc.Branch, x.ClientMessageID)
	var cacheKey string
	var hit *CachedAnswer
	if !retried {
		cacheKey, hit = g.lookupCache(ctx, userID, x.Model, p.prompt)
		if x.UserMessageID == uuid.Nil {
			// Regenerating asks for another answer: the model is asked,
			// and what it writes replaces the cached one.
			hit = nil
		}
	}
	if !retried && hit == nil && g.mayAskAhead(userID, quota, x.ReserveTokens, x.CreateTime) {
		ahead = askAhead(rc.ctx, p.provider, g.firstRequest(x.Model, p.prompt))
	}
	if err := g.stash(ctx, userID, x); err != nil {
		g.release()
		rc.cancel(errNotSaved)
		if ahead != nil {
			ahead.abandon()
		}
		return nil, err
	}
	user, answer, err := g.store.InsertExchange(ctx, userID, x)
	if err != nil {
		g.release()
		if g.cfg.Attachments != nil {
			g.cfg.Attachments.Discard(ctx, userID, x.ConversationID, x.Attachments)
		}
		// Refused or failed: the request asked ahead is canceled before
		// its answer is read.
		rc.cancel(errNotSaved)
		if ahead != nil {
			ahead.abandon()
		}
	} else if quota > 0 {
		g.reserved(userID, x.ReserveTokens, x.CreateTime)
	}
	switch {
	case errors.Is(err, ErrQuotaExceeded):
		reset := nextMonth(x.CreateTime)
		e := apperr.New(apperr.ResourceExhausted, "the monthly quota of %d tokens is used up (this message needs about %d); it resets at %s",
			quota, x.ReserveTokens, reset.Format(time.RFC3339))
		e.RetryAfter = int(reset.Sub(x.CreateTime).Seconds()) + 1
		return nil, e
	case errors.Is(err, ErrConversationBusy):
		return nil, errBusy
	case errors.Is(err, ErrTooManyGenerations):
		e := apperr.New(apperr.ResourceExhausted, "at most %d answers can be written at once; wait for one to end or stop it", x.MaxActive)
		e.RetryAfter = 1
		return nil, e
	case err != nil:
		return nil, err
	}
	if user == nil {
		// Regeneration: the user message is the answer's existing parent,
		// the last message of the loaded branch.
		parent := p.xc.Branch[len(p.xc.Branch)-1]
		user = &parent
	}
	gen := g.newGeneration(userID, *user, answer, p, rc, ahead)
	gen.cacheKey, gen.cached = cacheKey, hit
	g.register(gen)
	gen.launch()
	return gen.subscribe(0), nil
}

// retriedInBranch reports whether a message of branch was saved under the
// client message id key.
func retriedInBranch(branch []Message, key string) bool {
	if key == "" {
		return false
	}
	for _, m := range branch {
		if m.ClientMessageID == key {
			return true
		}
	}
	return false
}

// nextMonth is when the quota period holding t ends.
func nextMonth(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
}

// promptTokens is the prompt's size by EstimateTokens, ImageTokens an
// image.
func promptTokens(prompt []PromptMessage) int64 {
	var n int64
	for _, m := range prompt {
		n += int64(EstimateTokens(m.Content) + ImageTokens*len(m.Images))
	}
	return n
}

// stash puts the new message's attachments into object storage, when the
// deployment keeps them there, before the message is saved.
func (g *Generator) stash(ctx context.Context, userID uuid.UUID, x NewExchange) error {
	if len(x.Attachments) == 0 || g.cfg.Attachments == nil {
		return nil
	}
	return g.cfg.Attachments.Stash(ctx, userID, x.ConversationID, x.Attachments)
}
