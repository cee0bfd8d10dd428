package user

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/clock"
	"github.com/parleyhq/parley/internal/plan"
)

// Service applies the account rules on top of a Store.
type Service struct {
	store Store
	plans plan.Resolver
	// offered reports whether the server offers a model (chat.Models.Has).
	offered func(string) bool
	clock   clock.Clock
	answers AnswerStopper
	billing Billing // nil: no billing
	// attachments deletes the stored objects of a deleted user; may be nil.
	attachments AttachmentDeleter
	// cache forgets a deleted user's cached answers; may be nil.
	cache CacheForgetter
}

// CacheForgetter deletes a deleted user's answers from the response cache;
// respcache.Redis is one.
type CacheForgetter interface {
	// ForgetUser deletes every answer cached for the user alone.
	ForgetUser(ctx context.Context, userID uuid.UUID) error
}

// WithCache makes Delete remove the user's answers from the response
// cache too; it returns s.
func (s *Service) WithCache(c CacheForgetter) *Service {
	s.cache = c
	return s
}

// AttachmentDeleter deletes a deleted user's attachment objects;
// attachment.Service is one.
type AttachmentDeleter interface {
	// UserDeleted deletes every stored object of the user's attachments.
	UserDeleted(ctx context.Context, userID uuid.UUID) error
}

// WithAttachments makes Delete remove the user's attachment objects from
// object storage too; it returns s.
func (s *Service) WithAttachments(a AttachmentDeleter) *Service {
	s.attachments = a
	return s
}

// NewService returns a Service. plans tells each user's plan; offered
// reports whether the server serves a model; clk (the system clock when
// nil) says which month is this month; answers (may be nil) stops the
// answers of a deleted user.
func NewService(store Store, plans plan.Resolver, offered func(string) bool, clk clock.Clock, answers AnswerStopper) *Service {
	if clk == nil {
		clk = clock.Real()
	}
	return &Service{store: store, plans: plans, offered: offered, clock: clk, answers: answers}
}

// WithBilling makes Delete cancel the user's paid subscription first; it
// returns s.
func (s *Service) WithBilling(b Billing) *Service {
	s.billing = b
	return s
}

// Account is a profile with the plan its user is on.
type Account struct {
	Profile Profile
	Plan    plan.Plan
	// RenewTime is when a paid plan renews next; EndTime when a canceled
	// one ends. Both are zero for plans that do neither.
	RenewTime, EndTime time.Time
}

// Me returns the caller's account, creating their profile on the first
// call and refreshing its email and anonymous flag from id on later ones.
func (s *Service) Me(ctx context.Context, id Identity) (Account, error) {
	return s.update(ctx, id, Patch{}, false)
}

// Update applies p to the caller's preferences and returns the account. It
// returns apperr Invalid for a value out of bounds or a model the server
// does not offer, and PermissionDenied for a model the plan does not
// include.
func (s *Service) Update(ctx context.Context, id Identity, p Patch) (Account, error) {
	return s.update(ctx, id, p, true)
}

func (s *Service) update(ctx context.Context, id Identity, p Patch, check bool) (Account, error) {
	pl, err := s.plans.PlanOf(ctx, id.UserID)
	if err != nil {
		return Account{}, err
	}
	if check {
		if err := s.checkPatch(p, pl); err != nil {
			return Account{}, err
		}
	}
	prof, err := s.store.UpsertProfile(ctx, id, p)
	if err != nil {
		return Account{}, err
	}
	a := Account{Profile: prof, Plan: pl}
	if s.billing != nil {
		if a.RenewTime, a.EndTime, err = s.billing.Renewal(ctx, id.UserID); err != nil {
			return Account{}, err
		}
	}
	return a, nil
}

func (s *Service) checkPatch(p Patch, pl plan.Plan) error {
	if err := checkText("display_name", p.DisplayName, MaxDisplayNameRunes); err != nil {
		return err
	}
	if err := checkText("default_system_prompt", p.DefaultSystemPrompt, MaxSystemPromptRunes); err != nil {
		return err
	}
	if p.DefaultModel == nil || *p.DefaultModel == "" {
		return nil // empty: the server's default
	}
	model := *p.DefaultModel
	if len(model) > maxModelBytes || (s.offered != nil && !s.offered(model)) {
		return apperr.InvalidField("default_model", "%q is not a model this server offers", truncate(model, 64))
	}
	if !pl.AllowsModel(model) {
		return apperr.New(apperr.PermissionDenied,
			"default_model: the %s plan does not include %q; choose one of %s, or upgrade", pl.Name, model, strings.Join(pl.Models, ", "))
	}
	return nil
}

func checkText(field string, value *string, maxRunes int) error {
	if value == nil {
		return nil
	}
	if !utf8.ValidString(*value) {
		return apperr.InvalidField(field, "must be valid UTF-8")
	}
	if strings.ContainsRune(*value, 0) {
		// PostgreSQL's text cannot hold it.
		return apperr.InvalidField(field, "must not contain NUL characters")
	}
	if n := utf8.RuneCountInString(*value); n > maxRunes {
		return apperr.InvalidField(field, "must be at most %d characters, got %d", maxRunes, n)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
