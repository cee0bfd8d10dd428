package store

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleyhq/parley/internal/store/sqlcgen"
	"github.com/parleyhq/parley/internal/user"
)

func toProfile(r sqlcgen.ParleyProfile) user.Profile {
	return user.Profile{
		Identity: user.Identity{UserID: r.UserID, Email: r.Email, Anonymous: r.Anonymous},
		Preferences: user.Preferences{
			DisplayName: r.DisplayName, DefaultModel: r.DefaultModel, DefaultSystemPrompt: r.DefaultSystemPrompt,
		},
		CreateTime: r.CreateTime,
		UpdateTime: r.UpdateTime,
	}
}

// UpsertProfile implements user.Store.
func (s *Store) UpsertProfile(ctx context.Context, id user.Identity, p user.Patch) (user.Profile, error) {
	row, err := s.q.UpsertProfile(ctx, sqlcgen.UpsertProfileParams{
		UserID: id.UserID, Email: id.Email, Anonymous: id.Anonymous,
		DisplayName: p.DisplayName, DefaultModel: p.DefaultModel, DefaultSystemPrompt: p.DefaultSystemPrompt,
	})
	if err != nil {
		return user.Profile{}, interpretError(err, "profile")
	}
	return toProfile(row), nil
}

// MonthUsage implements user.UsageStore. Its two reads share one
// repeatable-read snapshot, so the split adds up to what it was at one
// moment.
func (s *Store) MonthUsage(ctx context.Context, userID uuid.UUID, start, end time.Time) (user.MonthUsage, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return user.MonthUsage{}, interpretError(err, "usage")
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	q := s.q.WithTx(tx)
	totals, err := q.GetMonthUsage(ctx, sqlcgen.GetMonthUsageParams{UserID: userID, MonthStart: start, MonthEnd: end})
	if err != nil {
		return user.MonthUsage{}, interpretError(err, "usage")
	}
	rows, err := q.ListMonthModelUsage(ctx, sqlcgen.ListMonthModelUsageParams{UserID: userID, MonthStart: start, MonthEnd: end})
	if err != nil {
		return user.MonthUsage{}, interpretError(err, "usage")
	}
	if err := tx.Commit(ctx); err != nil {
		return user.MonthUsage{}, interpretError(err, "usage")
	}
	m := user.MonthUsage{
		UsedTokens: totals.UsedTokens, ReservedTokens: totals.ReservedTokens, ActiveAnswers: int(totals.ActiveGenerations),
		AnswerTokens: totals.AnswerTokens, AgentTokens: totals.AgentTokens, ByModel: make([]user.ModelUsage, len(rows)),
	}
	for i, r := range rows {
		m.ByModel[i] = user.ModelUsage{Model: r.Model, Kind: r.Kind, Tokens: r.Tokens}
	}
	return m, nil
}

// DeleteUser implements user.Store in one transaction.
func (s *Store) DeleteUser(ctx context.Context, userID uuid.UUID) (user.Deleted, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return user.Deleted{}, interpretError(err, "user data")
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	q := s.q.WithTx(tx)
	if _, err := q.LockUserConversations(ctx, userID); err != nil {
		return user.Deleted{}, interpretError(err, "conversations")
	}
	var d user.Deleted
	if d.GenerationIDs, err = q.ListUserStreamingAnswers(ctx, userID); err != nil {
		return user.Deleted{}, interpretError(err, "messages")
	}
	if d.RunIDs, err = q.CancelUserRuns(ctx, userID); err != nil {
		return user.Deleted{}, interpretError(err, "agent runs")
	}
	// The user's plan is cached on every instance: forgotten at commit.
	if err := q.NotifyAgent(ctx, "p:"+userID.String()); err != nil {
		return user.Deleted{}, interpretError(err, "notification")
	}
	for _, runID := range d.RunIDs {
		// Delivered at commit: the instance running a step of the run
		// cancels it (as CancelRun's notice does); the step then finds its
		// run gone and saves nothing.
		if err := q.NotifyAgent(ctx, "c:"+runID.String()); err != nil {
			return user.Deleted{}, interpretError(err, "notification")
		}
	}
	for _, del := range []struct {
		what string
		run  func(context.Context, uuid.UUID) error
	}{
		{"artifacts", q.DeleteUserArtifacts},
		{"agent runs", q.DeleteUserRuns},
		{"conversations", q.DeleteUserConversations},
		{"token usage", q.DeleteUserUsage},
		{"subscription", q.DeleteUserSubscription},
		{"profile", q.DeleteProfile},
	} {
		if err := del.run(ctx, userID); err != nil {
			return user.Deleted{}, interpretError(err, del.what)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return user.Deleted{}, interpretError(err, "user data")
	}
	return d, nil
}

// ExportUser implements user.ExportStore in one statement.
func (s *Store) ExportUser(ctx context.Context, userID uuid.UUID) ([]byte, error) {
	doc, err := s.q.ExportUser(ctx, userID)
	if err != nil {
		return nil, interpretError(err, "export")
	}
	return []byte(doc), nil
}
