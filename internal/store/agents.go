package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/store/sqlcgen"
)

// TaskSink queues agent tasks inside the store's transactions: River's
// client inserts a job (internal/riverq), the QStash outbox an outbox row.
// AfterCommit, when the sink implements it, runs once the transaction that
// queued tasks has committed (the outbox publishes them then).
type TaskSink interface {
	EnqueueTx(ctx context.Context, tx pgx.Tx, t agent.Task, at time.Time) error
}

// AfterCommitter is the optional second half of a TaskSink.
type AfterCommitter interface {
	AfterCommit(ctx context.Context, tasks []QueuedTask)
}

// QueuedTask is a task a committed transaction queued, and when it may
// start (zero: at once).
type QueuedTask struct {
	Task agent.Task
	At   time.Time
}

// NotifyChannel is the Postgres channel instances notify each other on:
// the payload is "e:<run id>" when a run has new events, "c:<run id>" when
// it was asked to cancel, and "p:<user id>" when a user's plan may have
// changed.
const NotifyChannel = "parley_agent"

// Agents implements agent.Store on the store's pool, queueing tasks
// through sink.
type Agents struct {
	s    *Store
	sink TaskSink
}

// Agents returns the agent store that queues tasks through sink.
func (s *Store) Agents(sink TaskSink) *Agents { return &Agents{s: s, sink: sink} }

var _ agent.Store = (*Agents)(nil)

// inTx runs fn in a transaction and, after it commits, hands the tasks fn
// queued to the sink's AfterCommit.
func (a *Agents) inTx(ctx context.Context, fn func(q *sqlcgen.Queries, enqueue func(agent.Task, time.Time) error) error) error {
	tx, err := a.s.pool.Begin(ctx)
	if err != nil {
		return interpretError(err, "agent run")
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it does nothing
	var queued []QueuedTask
	enqueue := func(t agent.Task, at time.Time) error {
		if err := a.sink.EnqueueTx(ctx, tx, t, at); err != nil {
			return fmt.Errorf("queue %s: %w", t.DedupKey(), err)
		}
		queued = append(queued, QueuedTask{Task: t, At: at})
		return nil
	}
	if err := fn(a.s.q.WithTx(tx), enqueue); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return interpretError(err, "agent run")
	}
	if ac, ok := a.sink.(AfterCommitter); ok && len(queued) > 0 {
		ac.AfterCommit(context.WithoutCancel(ctx), queued)
	}
	return nil
}

// CreateRun implements agent.Store.
func (a *Agents) CreateRun(ctx context.Context, r agent.NewRun, maxActive int, first agent.Task) (agent.Run, bool, error) {
	var row sqlcgen.ParleyAgentRun
	existing := uuid.Nil
	names := make([]string, len(agent.Steps))
	for i, n := range agent.Steps {
		names[i] = string(n)
	}
	err := a.inTx(ctx, func(q *sqlcgen.Queries, enqueue func(agent.Task, time.Time) error) error {
		if err := q.LockUserRuns(ctx, r.UserID); err != nil {
			return interpretError(err, "agent run")
		}
		if r.RequestID != "" {
			id, err := q.GetAgentRunIDByRequestID(ctx, sqlcgen.GetAgentRunIDByRequestIDParams{UserID: r.UserID, RequestID: &r.RequestID})
			if err == nil {
				existing = id
				return nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return interpretError(err, "agent run")
			}
		}
		n, err := q.CountActiveAgentRuns(ctx, r.UserID)
		if err != nil {
			return interpretError(err, "agent run")
		}
		if n >= int64(maxActive) {
			return agent.ErrTooManyRuns
		}
		if r.QuotaTokens > 0 {
			used, err := q.GetMonthTokens(ctx, sqlcgen.GetMonthTokensParams{UserID: r.UserID, Month: r.Month})
			if err != nil {
				return interpretError(err, "token usage")
			}
			if used >= r.QuotaTokens {
				return agent.ErrQuotaExceeded
			}
		}
		ins, err := q.InsertAgentRun(ctx, sqlcgen.InsertAgentRunParams{
			ConversationID: nonNil(r.ConversationID), UserID: r.UserID, ID: r.ID, Goal: r.Goal, Model: r.Model,
			Tools: r.Tools, QuotaTokens: r.QuotaTokens, RequestID: nonEmpty(r.RequestID), StepNames: names,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return interpretError(err, "conversation")
		}
		if err != nil {
			return interpretError(err, "agent run")
		}
		row = sqlcgen.ParleyAgentRun(ins)
		return enqueue(first, time.Time{})
	})
	if err != nil {
		return agent.Run{}, false, err
	}
	if existing != uuid.Nil {
		run, err := a.GetRun(ctx, r.UserID, existing)
		return run, false, err
	}
	run := toRun(row)
	run.Steps = make([]agent.Step, len(agent.Steps))
	for i, n := range agent.Steps {
		run.Steps[i] = agent.Step{Index: i, Name: n, Status: agent.StepPending}
	}
	run.Steps[0].Attempt = 1
	return run, true, nil
}

func toRun(r sqlcgen.ParleyAgentRun) agent.Run {
	return agent.Run{
		ID: r.ID, UserID: r.UserID, ConversationID: deref(r.ConversationID), Goal: r.Goal, Model: r.Model, Tools: r.Tools,
		Status: agent.Status(r.Status), Step: int(r.Step), Summary: r.Summary, Error: r.Error,
		QuotaTokens: r.QuotaTokens, TotalTokens: r.TotalTokens, CancelRequested: r.CancelRequested,
		SummaryMessageID: deref(r.SummaryMessageID), LastSeq: r.LastSeq,
		CreateTime: r.CreateTime, UpdateTime: r.UpdateTime, EndTime: deref(r.EndTime),
	}
}

func toStep(r sqlcgen.ParleyAgentStep) agent.Step {
	return agent.Step{
		Index: int(r.Idx), Name: agent.StepName(r.Name), Status: agent.StepStatus(r.Status), Attempt: int(r.Attempt),
		Output: r.Output, Error: r.Error, TotalTokens: r.TotalTokens, StartTime: deref(r.StartTime), EndTime: deref(r.EndTime),
	}
}

// GetRun implements agent.Store.
func (a *Agents) GetRun(ctx context.Context, userID, runID uuid.UUID) (agent.Run, error) {
	row, err := a.s.q.GetAgentRun(ctx, sqlcgen.GetAgentRunParams{ID: runID, UserID: userID})
	if err != nil {
		return agent.Run{}, interpretError(err, "agent run")
	}
	return a.withSteps(ctx, a.s.q, toRun(row))
}

func (a *Agents) withSteps(ctx context.Context, q *sqlcgen.Queries, run agent.Run) (agent.Run, error) {
	steps, err := q.ListAgentSteps(ctx, run.ID)
	if err != nil {
		return agent.Run{}, interpretError(err, "agent run")
	}
	run.Steps = make([]agent.Step, 0, len(steps))
	for _, s := range steps {
		run.Steps = append(run.Steps, toStep(s))
	}
	return run, nil
}

// ListRuns implements agent.Store in two statements: the page of runs,
// then all their steps.
func (a *Agents) ListRuns(ctx context.Context, userID uuid.UUID, after *agent.Cursor, limit int) ([]agent.Run, error) {
	p := sqlcgen.ListAgentRunsParams{UserID: userID, MaxRows: int32(limit)}
	if after != nil {
		p.AfterTime, p.AfterID = &after.Time, &after.ID
	}
	rows, err := a.s.q.ListAgentRuns(ctx, p)
	if err != nil {
		return nil, interpretError(err, "agent runs")
	}
	runs := make([]agent.Run, len(rows))
	ids := make([]uuid.UUID, len(rows))
	at := map[uuid.UUID]int{}
	for i, r := range rows {
		runs[i], ids[i], at[r.ID] = toRun(r), r.ID, i
	}
	if len(ids) == 0 {
		return runs, nil
	}
	steps, err := a.s.q.ListAgentStepsOfRuns(ctx, ids)
	if err != nil {
		return nil, interpretError(err, "agent runs")
	}
	for _, s := range steps {
		i := at[s.RunID]
		runs[i].Steps = append(runs[i].Steps, agent.Step{
			Index: int(s.Idx), Name: agent.StepName(s.Name), Status: agent.StepStatus(s.Status), Attempt: int(s.Attempt),
			Error: s.Error, TotalTokens: s.TotalTokens, StartTime: deref(s.StartTime), EndTime: deref(s.EndTime),
		})
	}
	return runs, nil
}

// CancelRun implements agent.Store.
func (a *Agents) CancelRun(ctx context.Context, userID, runID uuid.UUID) (agent.Run, error) {
	err := a.inTx(ctx, func(q *sqlcgen.Queries, _ func(agent.Task, time.Time) error) error {
		if _, err := q.RequestAgentRunCancel(ctx, sqlcgen.RequestAgentRunCancelParams{ID: runID, UserID: userID}); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // ended already, or not the user's: GetRun tells
			}
			return interpretError(err, "agent run")
		}
		if err := a.cancelIdle(ctx, q, runID); err != nil {
			return err
		}
		return a.notify(ctx, q, "c:"+runID.String())
	})
	if err != nil {
		return agent.Run{}, err
	}
	return a.GetRun(ctx, userID, runID)
}

// cancelIdle ends a run asked to cancel that no delivery runs right now,
// with its last event.
func (a *Agents) cancelIdle(ctx context.Context, q *sqlcgen.Queries, runID uuid.UUID) error {
	row, err := q.CancelIdleAgentRun(ctx, runID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // a step runs: it ends the run when it sees the flag
	}
	if err != nil {
		return interpretError(err, "agent run")
	}
	_, err = a.appendEvents(ctx, q, agent.Task{RunID: runID, Step: int(row.Step)}, nil, 0, []agent.Event{{Step: -1, Kind: agent.EventRunCanceled}}, nil)
	return err
}

// notify wakes every instance's listener once q's transaction commits.
func (a *Agents) notify(ctx context.Context, q *sqlcgen.Queries, payload string) error {
	return interpretError(q.NotifyAgent(ctx, payload), "notification")
}

// ClaimStep implements agent.Store: one statement when the step is
// claimed (the lease, the run's status and the month's usage), then the
// steps' outputs and the started event.
func (a *Agents) ClaimStep(ctx context.Context, t agent.Task, owner uuid.UUID, lease time.Duration, month time.Time) (agent.Claim, error) {
	row, err := a.s.q.ClaimAgentStep(ctx, sqlcgen.ClaimAgentStepParams{
		Owner: &owner, LeaseSeconds: lease.Seconds(), RunID: t.RunID, Idx: int32(t.Step), Attempt: int32(t.Attempt), Month: month,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return a.unclaimed(ctx, t)
	}
	if err != nil {
		return agent.Claim{}, interpretError(err, "agent step")
	}
	run := toRun(sqlcgen.ParleyAgentRun{
		ID: row.ID, UserID: row.UserID, ConversationID: row.ConversationID, Goal: row.Goal, Model: row.Model, Tools: row.Tools,
		Status: row.Status, Step: row.Step, Summary: row.Summary, Error: row.Error, QuotaTokens: row.QuotaTokens,
		TotalTokens: row.TotalTokens, CancelRequested: row.CancelRequested, SummaryMessageID: row.SummaryMessageID,
		LastSeq: row.LastSeq, RequestID: row.RequestID, CreateTime: row.CreateTime, UpdateTime: row.UpdateTime, EndTime: row.EndTime,
	})
	if run, err = a.withSteps(ctx, a.s.q, run); err != nil {
		return agent.Claim{}, err
	}
	seq, err := a.appendEvents(ctx, a.s.q, t, &owner, lease, []agent.Event{{Step: t.Step, Kind: agent.EventStepStarted, Attempt: t.Attempt}}, nil)
	if err != nil {
		return agent.Claim{}, err
	}
	return agent.Claim{State: agent.Claimed, Run: run, Seq: seq, MonthTokens: row.MonthTokens, ToolRounds: row.StepToolRounds}, nil
}

// unclaimed says why a claim took nothing, and ends a run asked to cancel.
func (a *Agents) unclaimed(ctx context.Context, t agent.Task) (agent.Claim, error) {
	st, err := a.s.q.GetAgentStepState(ctx, sqlcgen.GetAgentStepStateParams{RunID: t.RunID, Idx: int32(t.Step)})
	if errors.Is(err, pgx.ErrNoRows) {
		return agent.Claim{State: agent.Stale}, nil // the run was deleted
	}
	if err != nil {
		return agent.Claim{}, interpretError(err, "agent step")
	}
	switch {
	case agent.Status(st.RunStatus).Ended():
		return agent.Claim{State: agent.Stale}, nil
	case st.CancelRequested:
		err := a.inTx(ctx, func(q *sqlcgen.Queries, _ func(agent.Task, time.Time) error) error {
			return a.cancelIdle(ctx, q, t.RunID)
		})
		return agent.Claim{State: agent.Canceled}, err
	case int(st.Attempt) != t.Attempt || (st.Status != string(agent.StepPending) && st.Status != string(agent.StepRunning)):
		return agent.Claim{State: agent.Stale}, nil
	}
	wait := time.Second
	if st.LeaseUntil != nil {
		wait = max(st.LeaseUntil.Sub(st.DbNow), 100*time.Millisecond)
	}
	return agent.Claim{State: agent.Busy, RetryAfter: wait}, nil
}

// AppendEvents implements agent.Store.
func (a *Agents) AppendEvents(ctx context.Context, t agent.Task, owner uuid.UUID, lease time.Duration, evs []agent.Event, toolRounds []byte) (bool, error) {
	kinds, datas, err := encodeEvents(evs)
	if err != nil {
		return false, err
	}
	row, err := a.s.q.AppendAgentEvents(ctx, sqlcgen.AppendAgentEventsParams{
		LeaseSeconds: lease.Seconds(), ToolRounds: toolRounds, Owner: &owner, RunID: t.RunID, Step: int32(t.Step), Kinds: kinds, Datas: datas,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, agent.ErrLeaseLost
	}
	if err != nil {
		return false, interpretError(err, "agent events")
	}
	return row.CancelRequested, nil
}

// appendEvents appends events with q; with owner, only while it holds the
// step's lease. It returns the last seq.
func (a *Agents) appendEvents(ctx context.Context, q *sqlcgen.Queries, t agent.Task, owner *uuid.UUID, lease time.Duration, evs []agent.Event, toolRounds []byte) (int64, error) {
	kinds, datas, err := encodeEvents(evs)
	if err != nil {
		return 0, err
	}
	row, err := q.AppendAgentEvents(ctx, sqlcgen.AppendAgentEventsParams{
		LeaseSeconds: lease.Seconds(), ToolRounds: toolRounds, Owner: owner, RunID: t.RunID, Step: int32(t.Step), Kinds: kinds, Datas: datas,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, agent.ErrLeaseLost
	}
	if err != nil {
		return 0, interpretError(err, "agent events")
	}
	return row.LastSeq, nil
}

func encodeEvents(evs []agent.Event) ([]string, [][]byte, error) {
	kinds := make([]string, len(evs))
	datas := make([][]byte, len(evs))
	for i, ev := range evs {
		raw, err := json.Marshal(ev)
		if err != nil {
			return nil, nil, fmt.Errorf("store: encode agent event: %w", err)
		}
		kinds[i], datas[i] = string(ev.Kind), raw
	}
	return kinds, datas, nil
}

// EndStep implements agent.Store in one transaction.
func (a *Agents) EndStep(ctx context.Context, e agent.StepEnd) error {
	return a.inTx(ctx, func(q *sqlcgen.Queries, enqueue func(agent.Task, time.Time) error) error {
		var n int64
		var err error
		idx := int32(e.Task.Step)
		if e.Outcome == agent.Retrying {
			n, err = q.RetryAgentStep(ctx, sqlcgen.RetryAgentStepParams{
				Output: e.Output, Error: e.Error, ToolRounds: e.ToolRounds, Tokens: e.Tokens, RunID: e.Task.RunID, Idx: idx, Owner: &e.Owner,
			})
		} else {
			n, err = q.EndAgentStep(ctx, sqlcgen.EndAgentStepParams{
				Status: string(e.Outcome), Output: e.Output, ToolRounds: e.ToolRounds, Error: e.Error, Tokens: e.Tokens,
				RunID: e.Task.RunID, Idx: idx, Owner: &e.Owner,
			})
		}
		if err != nil {
			return interpretError(err, "agent step")
		}
		if n == 0 {
			return agent.ErrLeaseLost
		}
		if e.Tokens > 0 {
			if err := q.ChargeTokens(ctx, sqlcgen.ChargeTokensParams{UserID: e.UserID, Month: e.Month, Tokens: e.Tokens}); err != nil {
				return interpretError(err, "token usage")
			}
		}
		var summaryMessage *uuid.UUID
		if e.PostSummary {
			id, err := q.PostAgentSummary(ctx, sqlcgen.PostAgentSummaryParams{
				ConversationID: e.ConversationID, UserID: e.UserID, Content: e.Summary, Model: e.Model,
				PromptTokens: e.PromptTokens, CompletionTokens: e.CompletionTokens,
			})
			switch {
			case err == nil:
				summaryMessage = &id
			case !errors.Is(err, pgx.ErrNoRows): // no row: the conversation was deleted meanwhile
				return interpretError(err, "conversation")
			}
		}
		if e.Next != nil && e.Next.Step != e.Task.Step {
			if err := q.QueueAgentStep(ctx, sqlcgen.QueueAgentStepParams{RunID: e.Next.RunID, Idx: int32(e.Next.Step)}); err != nil {
				return interpretError(err, "agent step")
			}
		}
		if err := q.UpdateAgentRun(ctx, sqlcgen.UpdateAgentRunParams{
			Status: string(e.RunStatus), Step: int32(e.RunStep), Tokens: e.Tokens, Summary: e.Summary, Error: e.RunError,
			SummaryMessageID: summaryMessage, ID: e.Task.RunID,
		}); err != nil {
			return interpretError(err, "agent run")
		}
		if _, err := a.appendEvents(ctx, q, e.Task, nil, 0, e.Events, nil); err != nil {
			return err
		}
		if e.Next != nil {
			return enqueue(*e.Next, e.NotBefore)
		}
		return nil
	})
}

// ReleaseStep implements agent.Store.
func (a *Agents) ReleaseStep(ctx context.Context, t agent.Task, owner uuid.UUID) error {
	return interpretError(a.s.q.ReleaseAgentStep(ctx, sqlcgen.ReleaseAgentStepParams{RunID: t.RunID, Idx: int32(t.Step), Owner: &owner}), "agent step")
}

// Stranded implements agent.Store.
func (a *Agents) Stranded(ctx context.Context, pendingBefore, leaseBefore time.Time, limit int) ([]agent.Task, error) {
	rows, err := a.s.q.ListStrandedAgentSteps(ctx, sqlcgen.ListStrandedAgentStepsParams{
		PendingBefore: pendingBefore, LeaseBefore: &leaseBefore, MaxRows: int32(limit),
	})
	if err != nil {
		return nil, interpretError(err, "agent runs")
	}
	out := make([]agent.Task, len(rows))
	for i, r := range rows {
		out[i] = agent.Task{RunID: r.ID, Step: int(r.Step), Attempt: int(r.Attempt), Requeue: int(r.Requeues)}
	}
	return out, nil
}

// Requeue implements agent.Store: the count and the task in one
// transaction.
func (a *Agents) Requeue(ctx context.Context, t agent.Task) error {
	return a.inTx(ctx, func(q *sqlcgen.Queries, enqueue func(agent.Task, time.Time) error) error {
		n, err := q.RequeueAgentRun(ctx, sqlcgen.RequeueAgentRunParams{ID: t.RunID, Requeues: int32(t.Requeue)})
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // another sweep did it, or the run ended meanwhile
		}
		if err != nil {
			return interpretError(err, "agent run")
		}
		t.Requeue = int(n)
		return enqueue(t, time.Time{})
	})
}

// Events implements agent.Store.
func (a *Agents) Events(ctx context.Context, userID, runID uuid.UUID, afterSeq int64, limit int) ([]agent.Event, error) {
	rows, err := a.s.q.ListAgentEvents(ctx, sqlcgen.ListAgentEventsParams{UserID: userID, RunID: runID, AfterSeq: afterSeq, MaxRows: int32(limit)})
	if err != nil {
		return nil, interpretError(err, "agent events")
	}
	out := make([]agent.Event, 0, len(rows))
	for _, r := range rows {
		var ev agent.Event
		if err := json.Unmarshal(r.Data, &ev); err != nil {
			return nil, fmt.Errorf("store: decode agent event %d of %s: %w", r.Seq, runID, err)
		}
		ev.Seq, ev.Step, ev.Kind, ev.Time = r.Seq, int(r.Step), agent.EventKind(r.Kind), r.CreateTime
		if ev.Kind.Terminal() {
			ev.Step = -1
		}
		out = append(out, ev)
	}
	return out, nil
}

// ListenAgents delivers the notifications of every instance to fn (kind
// 'e' or 'c' and a run id, or 'p' and a user id) until ctx ends, on a
// connection of its own. listening is called once the connection listens:
// what was notified before then is not delivered. It returns when the
// connection fails; the caller retries.
func (s *Store) ListenAgents(ctx context.Context, listening func(), fn func(kind byte, id uuid.UUID)) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return interpretError(err, "notifications")
	}
	// The connection has LISTEN state: it never goes back to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx)) //nolint:errcheck // closing
	if _, err := pc.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return interpretError(err, "notifications")
	}
	listening()
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return interpretError(err, "notifications")
		}
		kind, id, ok := strings.Cut(n.Payload, ":")
		runID, perr := uuid.Parse(id)
		if !ok || len(kind) != 1 || perr != nil {
			continue
		}
		fn(kind[0], runID)
	}
}
