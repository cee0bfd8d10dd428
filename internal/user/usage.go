package user

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Kinds of work that spend tokens, in ModelUsage.
const (
	KindAnswer   = "answer"
	KindAgentRun = "agent_run"
)

// MonthUsage is what the store counts for one user and month.
type MonthUsage struct {
	// UsedTokens, ReservedTokens and ActiveAnswers are what the quota and
	// the concurrency cap count (token_usage).
	UsedTokens     int64
	ReservedTokens int64
	ActiveAnswers  int
	// AnswerTokens are the saved usage of the answers that started in the
	// month; AgentTokens that of the agent steps that ended in it.
	AnswerTokens int64
	AgentTokens  int64
	// ByModel splits AnswerTokens and AgentTokens by model and kind.
	ByModel []ModelUsage
}

// ModelUsage is the tokens one model spent on one kind of work.
type ModelUsage struct {
	Model  string
	Kind   string
	Tokens int64
}

// UsageStore reads a user's usage.
type UsageStore interface {
	// MonthUsage returns userID's usage for the month [start, end), with
	// one consistent view of every table it reads.
	MonthUsage(ctx context.Context, userID uuid.UUID, start, end time.Time) (MonthUsage, error)
}

// Usage is a user's usage this month against their plan.
type Usage struct {
	MonthUsage
	PeriodStart time.Time
	ResetTime   time.Time
	// QuotaTokens is the plan's monthly quota; 0 means unlimited.
	QuotaTokens int64
	// TitleTokens is the rest of UsedTokens: titles, and answers whose
	// conversation was deleted since.
	TitleTokens int64
}

// Usage returns the caller's usage this month (UTC), the month being the
// one the service's clock is in.
func (s *Service) Usage(ctx context.Context, userID uuid.UUID) (Usage, error) {
	pl, err := s.plans.PlanOf(ctx, userID)
	if err != nil {
		return Usage{}, err
	}
	now := s.clock.Now().UTC()
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 1, 0)
	m, err := s.store.MonthUsage(ctx, userID, start, end)
	if err != nil {
		return Usage{}, err
	}
	return Usage{
		MonthUsage: m, PeriodStart: start, ResetTime: end, QuotaTokens: pl.MonthlyTokens,
		TitleTokens: max(m.UsedTokens-m.AnswerTokens-m.AgentTokens, 0),
	}, nil
}
