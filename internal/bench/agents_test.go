//go:build bench

package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/riverq"
)

// The agent-run benchmark (issue 11): runs of the offline model through
// the real service on River, each round on a fresh instance of it, then
// River's bare commit-to-work latency on the same database with the
// service stopped (its queue would take the baseline's jobs).
const (
	agentRounds         = 4
	agentSerialRuns     = 10 // per round, one after another
	agentConcurrentRuns = 10 // per round, all at once, each of its own user
	agentBaselineJobs   = 50 // per round, one at a time
	// agentBaselineGap paces the baseline's jobs so that each meets an
	// idle queue, as a step's job does.
	agentBaselineGap = 20 * time.Millisecond
	agentWordDelay   = 2 * time.Millisecond
	agentTargetP50   = 20 * time.Millisecond
	// agentWaitBound bounds every wait for a run or a job: a hang detector.
	agentWaitBound = time.Minute
)

// agentPhaseTitle is the phase's name in TestReport and its section's.
const agentPhaseTitle = "11. Agent runs"

// handoff is the time from a step's result saved to the next step
// started, and its parts. Total and the parts' ends are Postgres's clock
// except saved, which is the benchmark's (the same machine's clock).
type handoff struct {
	total time.Duration // end_time of step i → start_time of step i+1
	save  time.Duration // end_time → EndStep's commit returned (AfterSave)
	fetch time.Duration // commit returned → River's fetch locked the next job (attempted_at)
	claim time.Duration // fetch → the claim statement (start_time)
}

// agentRunTiming is one run's wall time and the model's share of it.
type agentRunTiming struct {
	server time.Duration // run.create_time → run.end_time
	client time.Duration // StartRun called → the watch's last event received
	model  time.Duration // the sum of its model calls' durations
	calls  int
}

// agentRound is what one round measured.
type agentRound struct {
	serial, concurrent         []handoff
	serialRuns, concurrentRuns []agentRunTiming
	// River alone, a job at a time.
	baseline []baselineJob
}

// baselineJob is one job of River alone: Commit called → Work started,
// and that split at the fetch that locked the job (attempted_at).
type baselineJob struct {
	total  time.Duration // Commit called → Work started
	commit time.Duration // Commit called → returned
	fetch  time.Duration // Commit returned → attempted_at
	work   time.Duration // attempted_at → Work started
}

type agentResult struct{ rounds []agentRound }

// modelTimer is a chat.Provider that times every model call, from
// Stream called to its stream's io.EOF (or error, or Close), by the goal
// of the run it serves (each run of the benchmark has its own goal).
type modelTimer struct {
	next chat.Provider

	mu     sync.Mutex
	byGoal map[string]*agentRunTiming
}

func newModelTimer(next chat.Provider) *modelTimer {
	return &modelTimer{next: next, byGoal: map[string]*agentRunTiming{}}
}

// Stream implements chat.Provider.
func (p *modelTimer) Stream(ctx context.Context, req chat.ModelRequest) (chat.ModelStream, error) {
	begin := time.Now()
	goal := goalOf(req)
	s, err := p.next.Stream(ctx, req)
	if err != nil {
		p.add(goal, time.Since(begin))
		return nil, err
	}
	return &timedModelStream{ModelStream: s, done: func() { p.add(goal, time.Since(begin)) }}, nil
}

func (p *modelTimer) add(goal string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.byGoal[goal]
	if r == nil {
		r = &agentRunTiming{}
		p.byGoal[goal] = r
	}
	r.model += d
	r.calls++
}

// of returns the model time of the run with that goal.
func (p *modelTimer) of(goal string) (time.Duration, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.byGoal[goal]; r != nil {
		return r.model, r.calls
	}
	return 0, 0
}

// goalOf is the run's goal as the step's prompt states it ("Goal: ..." up
// to the first line break).
func goalOf(req chat.ModelRequest) string {
	for _, m := range req.Messages {
		if m.Role == chat.RoleUser {
			goal, _, _ := strings.Cut(strings.TrimPrefix(m.Content, "Goal: "), "\n")
			return strings.TrimSpace(goal)
		}
	}
	return ""
}

// timedModelStream reports its call's duration once, when it ends.
type timedModelStream struct {
	chat.ModelStream
	once sync.Once
	done func()
}

func (s *timedModelStream) Recv() (chat.Delta, error) {
	d, err := s.ModelStream.Recv()
	if err != nil {
		s.once.Do(s.done)
	}
	return d, err
}

func (s *timedModelStream) Close() error {
	s.once.Do(s.done)
	return s.ModelStream.Close()
}

// savedTimes records when each step's EndStep transaction had committed
// (the runner's AfterSave hook), by run and step.
type savedTimes struct {
	mu sync.Mutex
	at map[agent.Task]time.Time // by run and step, attempt 1
}

func (s *savedTimes) record(t agent.Task) {
	now := time.Now()
	s.mu.Lock()
	s.at[agent.Task{RunID: t.RunID, Step: t.Step, Attempt: 1}] = now
	s.mu.Unlock()
}

func (s *savedTimes) of(runID uuid.UUID, step int) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.at[agent.Task{RunID: runID, Step: step, Attempt: 1}]
	return at, ok
}

// agentDriver starts and watches runs on one service instance.
type agentDriver struct {
	env   *apitest.Env
	model *modelTimer
	hc    connect.HTTPClient
}

// client is an AgentService client over Connect (binary protobuf) on h2c,
// as the other phases' clients.
func (d *agentDriver) client(tb testing.TB, user uuid.UUID) parleyv1connect.AgentServiceClient {
	return parleyv1connect.NewAgentServiceClient(d.hc, d.env.URL, connect.WithInterceptors(apitest.Bearer(d.env.Token(tb, user))))
}

// run starts a run with goal, watches it to its end and returns its id
// and times. It fails unless every step succeeded at its first attempt.
func (d *agentDriver) run(ctx context.Context, c parleyv1connect.AgentServiceClient, goal string) (uuid.UUID, agentRunTiming, error) {
	ctx, cancel := context.WithTimeout(ctx, agentWaitBound)
	defer cancel()
	begin := time.Now()
	res, err := c.StartRun(ctx, connect.NewRequest(&parleyv1.StartRunRequest{Goal: goal}))
	if err != nil {
		return uuid.Nil, agentRunTiming{}, fmt.Errorf("StartRun: %w", err)
	}
	runID, err := uuid.Parse(res.Msg.GetRun().GetId())
	if err != nil {
		return uuid.Nil, agentRunTiming{}, err
	}
	stream, err := c.WatchRun(ctx, connect.NewRequest(&parleyv1.WatchRunRequest{RunId: runID.String()}))
	if err != nil {
		return runID, agentRunTiming{}, fmt.Errorf("WatchRun: %w", err)
	}
	defer stream.Close()
	var last *parleyv1.WatchRunResponse
	for stream.Receive() {
		last = stream.Msg()
	}
	ended := time.Now()
	if err := stream.Err(); err != nil {
		return runID, agentRunTiming{}, fmt.Errorf("watch: %w", err)
	}
	run := last.GetRunFinished().GetRun()
	if run == nil || run.GetStatus() != parleyv1.RunStatus_RUN_STATUS_SUCCEEDED {
		return runID, agentRunTiming{}, fmt.Errorf("run %s did not succeed: %v", runID, last)
	}
	for _, s := range run.GetSteps() {
		if s.GetAttempts() != 1 {
			return runID, agentRunTiming{}, fmt.Errorf("run %s: step %v took %d attempts", runID, s.GetName(), s.GetAttempts())
		}
	}
	timing := agentRunTiming{server: run.GetEndTime().AsTime().Sub(run.GetCreateTime().AsTime()), client: ended.Sub(begin)}
	timing.model, timing.calls = d.model.of(goal)
	return runID, timing, nil
}

// measureAgents runs the phase: agentRounds rounds, each on a fresh
// instance of the service on the phase's database, of a warm-up run,
// agentSerialRuns runs one after another, agentConcurrentRuns at once,
// then, with the instance stopped, River's bare latency.
func measureAgents(t *testing.T) agentResult {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	dbURL := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	model := newModelTimer(llm.NewOffline(agentWordDelay))
	saved := &savedTimes{at: map[agent.Task]time.Time{}}
	var res agentResult
	runs := 0
	goal := func() string {
		runs++
		return fmt.Sprintf("Write notes on oolong tea, bench run %d", runs)
	}
	for round := range agentRounds {
		env := apitest.New(t, apitest.Options{
			DatabaseURL: dbURL, Provider: model, Models: []string{llm.OfflineModel},
			Agent: func(c *agent.RunnerConfig) { c.AfterSave = saved.record },
		})
		d := &agentDriver{env: env, model: model, hc: h2cClient()}
		var rr agentRound
		// Warm: connections, statement caches, River's listener.
		if _, _, err := d.run(ctx, d.client(t, uuid.New()), goal()); err != nil {
			t.Fatal(err)
		}
		// Every run has a user of its own, so that every run is the same:
		// the research step's search finds none of an earlier run's
		// artifacts.
		var serialIDs []uuid.UUID
		for range agentSerialRuns {
			id, timing, err := d.run(ctx, d.client(t, uuid.New()), goal())
			if err != nil {
				t.Fatal(err)
			}
			serialIDs = append(serialIDs, id)
			rr.serialRuns = append(rr.serialRuns, timing)
		}
		concurrentIDs := make([]uuid.UUID, agentConcurrentRuns)
		rr.concurrentRuns = make([]agentRunTiming, agentConcurrentRuns)
		errs := make([]error, agentConcurrentRuns)
		clients, goals := make([]parleyv1connect.AgentServiceClient, agentConcurrentRuns), make([]string, agentConcurrentRuns)
		for i := range clients {
			clients[i], goals[i] = d.client(t, uuid.New()), goal()
		}
		var wg sync.WaitGroup
		for i := range agentConcurrentRuns {
			wg.Go(func() { concurrentIDs[i], rr.concurrentRuns[i], errs[i] = d.run(ctx, clients[i], goals[i]) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		env.Stop()
		rr.serial = handoffsOf(t, ctx, pool, saved, serialIDs)
		rr.concurrent = handoffsOf(t, ctx, pool, saved, concurrentIDs)
		rr.baseline = measureRiverBaseline(t, ctx, pool, agentBaselineJobs)
		res.rounds = append(res.rounds, rr)
		t.Logf("agent round %d: handoff one at a time p50 %v p99 %v; %d at once p50 %v p99 %v; River alone p50 %v p99 %v",
			round+1, percentile(totals(rr.serial), 50).Round(10*time.Microsecond), percentile(totals(rr.serial), 99).Round(10*time.Microsecond),
			agentConcurrentRuns, percentile(totals(rr.concurrent), 50).Round(10*time.Microsecond), percentile(totals(rr.concurrent), 99).Round(10*time.Microsecond),
			percentile(baselineTotals(rr.baseline), 50).Round(10*time.Microsecond), percentile(baselineTotals(rr.baseline), 99).Round(10*time.Microsecond))
	}
	return res
}

// handoffsSQL reads the steps of the runs with the River job that started
// each (its attempted_at is the fetch that locked it).
const handoffsSQL = `
SELECT s.run_id, s.idx, s.start_time, s.end_time, j.attempted_at
FROM parley.agent_steps s
LEFT JOIN parley.river_job j ON j.kind = $2 AND j.args->>'run_id' = s.run_id::text
     AND (j.args->>'step')::int = s.idx AND (j.args->>'attempt')::int = s.attempt
WHERE s.run_id = ANY($1::uuid[])
ORDER BY s.run_id, s.idx`

// handoffsOf reads agent_steps for the runs: a handoff per run and step
// i in 0..3, steps[i+1].start_time − steps[i].end_time.
func handoffsOf(t *testing.T, ctx context.Context, pool *pgxpool.Pool, saved *savedTimes, runIDs []uuid.UUID) []handoff {
	type stepRow struct {
		RunID       uuid.UUID
		Idx         int
		StartTime   time.Time
		EndTime     time.Time
		AttemptedAt *time.Time
	}
	rows, err := pool.Query(ctx, handoffsSQL, runIDs, riverq.Kind)
	if err != nil {
		t.Fatal(err)
	}
	steps, err := pgx.CollectRows(rows, pgx.RowToStructByPos[stepRow])
	if err != nil {
		t.Fatal(err)
	}
	byRun := map[uuid.UUID][]stepRow{}
	for _, s := range steps {
		byRun[s.RunID] = append(byRun[s.RunID], s)
	}
	var out []handoff
	for _, id := range runIDs {
		ss := byRun[id]
		if len(ss) != len(agent.Steps) {
			t.Fatalf("run %s has %d steps", id, len(ss))
		}
		for i := range len(ss) - 1 {
			h := handoff{total: ss[i+1].StartTime.Sub(ss[i].EndTime)}
			at, ok := saved.of(id, i)
			if !ok || ss[i+1].AttemptedAt == nil {
				t.Fatalf("run %s step %d: no commit time or no River job for the next step", id, i)
			}
			h.save = at.Sub(ss[i].EndTime)
			h.fetch = ss[i+1].AttemptedAt.Sub(at)
			h.claim = ss[i+1].StartTime.Sub(*ss[i+1].AttemptedAt)
			out = append(out, h)
		}
	}
	return out
}

// measureRiverBaseline times River alone on pool's database: a Queue whose
// handler notes when Work starts, and n jobs inserted one at a time with
// EnqueueTx in a transaction of their own, agentBaselineGap apart, each
// timed from the call of Commit (its round trip included); then the
// jobs' attempted_at split that at River's fetch.
func measureRiverBaseline(t *testing.T, ctx context.Context, pool *pgxpool.Pool, n int) []baselineJob {
	var waiting sync.Map // agent.Task → chan time.Time
	handler := func(_ context.Context, task agent.Task) error {
		at := time.Now()
		if ch, ok := waiting.Load(task); ok {
			ch.(chan time.Time) <- at
		}
		return nil
	}
	q, err := riverq.New(pool, handler, riverq.Config{StepTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := q.Stop(stopCtx); err != nil {
			t.Errorf("stop the baseline queue: %v", err)
		}
	}()
	type timed struct{ called, returned, worked time.Time }
	jobs := map[uuid.UUID]timed{}
	var ids []uuid.UUID
	for i := range n + 1 { // the first warms the queue
		time.Sleep(agentBaselineGap)
		task := agent.Task{RunID: uuid.New(), Step: 0, Attempt: 1}
		started := make(chan time.Time, 1)
		waiting.Store(task, started)
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := q.EnqueueTx(ctx, tx, task, time.Time{}); err != nil {
			t.Fatal(err)
		}
		called := time.Now()
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		returned := time.Now()
		select {
		case at := <-started:
			if i > 0 {
				jobs[task.RunID] = timed{called, returned, at}
				ids = append(ids, task.RunID)
			}
		case <-time.After(agentWaitBound):
			t.Fatalf("River delivered no job within %s", agentWaitBound)
		}
		waiting.Delete(task)
	}
	rows, err := pool.Query(ctx, `SELECT (args->>'run_id')::uuid, attempted_at FROM parley.river_job WHERE kind = $1 AND (args->>'run_id')::uuid = ANY($2::uuid[])`, riverq.Kind, ids)
	if err != nil {
		t.Fatal(err)
	}
	fetched := map[uuid.UUID]time.Time{}
	for rows.Next() {
		var id uuid.UUID
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			t.Fatal(err)
		}
		fetched[id] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	out := make([]baselineJob, 0, len(ids))
	for _, id := range ids {
		j, at := jobs[id], fetched[id]
		if at.IsZero() {
			t.Fatalf("the baseline job of %s has no attempted_at", id)
		}
		out = append(out, baselineJob{total: j.worked.Sub(j.called), commit: j.returned.Sub(j.called), fetch: at.Sub(j.returned), work: j.worked.Sub(at)})
	}
	return out
}

func baselineTotals(js []baselineJob) []time.Duration {
	out := make([]time.Duration, len(js))
	for i, j := range js {
		out[i] = j.total
	}
	return out
}

func baselinePart(js []baselineJob, part func(baselineJob) time.Duration) []time.Duration {
	out := make([]time.Duration, len(js))
	for i, j := range js {
		out[i] = part(j)
	}
	return out
}

func totals(hs []handoff) []time.Duration {
	out := make([]time.Duration, len(hs))
	for i, h := range hs {
		out[i] = h.total
	}
	return out
}

func partOf(hs []handoff, part func(handoff) time.Duration) []time.Duration {
	out := make([]time.Duration, len(hs))
	for i, h := range hs {
		out[i] = part(h)
	}
	return out
}

// overheads are each run's wall time (by the clock wall picks) minus its
// model time.
func overheads(rs []agentRunTiming, wall func(agentRunTiming) time.Duration) []time.Duration {
	out := make([]time.Duration, len(rs))
	for i, r := range rs {
		out[i] = wall(r) - r.model
	}
	return out
}

func runsPart(rs []agentRunTiming, part func(agentRunTiming) time.Duration) []time.Duration {
	out := make([]time.Duration, len(rs))
	for i, r := range rs {
		out[i] = part(r)
	}
	return out
}

// shares are overhead over wall time, run by run.
func shares(rs []agentRunTiming, wall func(agentRunTiming) time.Duration) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = float64(wall(r)-r.model) / float64(wall(r))
	}
	return out
}

func medianOf(xs []float64) float64 { return spreadOf(xs).Med }

// rangeOf is the lowest to the highest of per-round values: "3.3 to 4.2 ms".
func rangeOf(rounds []float64, unit func(float64) string) string {
	s := spreadOf(rounds)
	if s.N <= 1 {
		return unit(s.Med)
	}
	return unit(s.Min) + " to " + unit(s.Max)
}

// agentFigures pools a kind of handoff or run over the rounds, and keeps
// one value per round for the spread.
type agentFigures struct {
	handoffs []handoff
	runs     []agentRunTiming
	p50      []float64 // per round, ms
	ratio    []float64 // per round: the handoff's p50 over River's
}

func figuresOf(res agentResult, concurrent bool) agentFigures {
	var f agentFigures
	for _, r := range res.rounds {
		hs, rs := r.serial, r.serialRuns
		if concurrent {
			hs, rs = r.concurrent, r.concurrentRuns
		}
		f.handoffs = append(f.handoffs, hs...)
		f.runs = append(f.runs, rs...)
		p50 := msOf(percentile(totals(hs), 50))
		f.p50 = append(f.p50, p50)
		f.ratio = append(f.ratio, p50/msOf(percentile(baselineTotals(r.baseline), 50)))
	}
	return f
}

func agentSection(res agentResult) (rows []summaryRow, details string) {
	serial, concurrent := figuresOf(res, false), figuresOf(res, true)
	var baseJobs []baselineJob
	var baseP50 []float64
	for _, r := range res.rounds {
		baseJobs = append(baseJobs, r.baseline...)
		baseP50 = append(baseP50, msOf(percentile(baselineTotals(r.baseline), 50)))
	}
	baseline := baselineTotals(baseJobs)
	bP50, bP99 := msOf(percentile(baseline, 50)), msOf(percentile(baseline, 99))
	x := func(v float64) string { return fmt.Sprintf("%.1f×", v) }
	baseText := fmt.Sprintf("River alone on the same database, Commit called → `Work` started: p50 %s (round medians %s), p99 %s over %d jobs", short(bP50), rangeOf(baseP50, short), short(bP99), len(baseline))
	handoffRow := func(figure string, f agentFigures) summaryRow {
		all := totals(f.handoffs)
		p50 := msOf(percentile(all, 50))
		return summaryRow{
			num: 11, figure: figure, baseline: baseText,
			target: fmt.Sprintf("p50 ≤ %d ms", agentTargetP50.Milliseconds()),
			measured: fmt.Sprintf("p50 %s (round medians %s), p99 %s over %d handoffs; p50 %s River's (rounds %s)",
				short(p50), rangeOf(f.p50, short), short(msOf(percentile(all, 99))), len(all), x(p50/bP50), rangeOf(f.ratio, x)),
			verdict: verdictOf(p50 <= msOf(agentTargetP50)),
		}
	}
	client := func(r agentRunTiming) time.Duration { return r.client }
	server := func(r agentRunTiming) time.Duration { return r.server }
	overheadRow := func(figure string, f agentFigures) summaryRow {
		over := overheads(f.runs, client)
		model := runsPart(f.runs, func(r agentRunTiming) time.Duration { return r.model })
		return summaryRow{
			num: 11, figure: figure,
			baseline: fmt.Sprintf("the run's model time (offline model, %g ms a word, %d calls a run): p50 %s", msOf(agentWordDelay), f.runs[0].calls, ms(msOf(percentile(model, 50)))),
			target:   "none set",
			measured: fmt.Sprintf("overhead p50 %s, p99 %s over %d runs; %s of the run's wall time (median)",
				ms(msOf(percentile(over, 50))), ms(msOf(percentile(over, 99))), len(over), pct(medianOf(shares(f.runs, client)))),
			verdict: verdictReported,
		}
	}
	rows = append(rows,
		handoffRow("Agent step handoff on River (a step's result saved → the next step started), one run at a time", serial),
		handoffRow(fmt.Sprintf("Agent step handoff on River, %d runs at once", agentConcurrentRuns), concurrent),
		overheadRow("Offline agent run's overhead beyond its model time, one run at a time", serial),
		overheadRow(fmt.Sprintf("Offline agent run's overhead beyond its model time, %d runs at once", agentConcurrentRuns), concurrent),
	)

	var b strings.Builder
	fmt.Fprintf(&b, "A database of this phase's own; %d rounds, each on a fresh instance of the real service (`apitest.New`, built by `app.New` as `parley serve` is, River delivering the steps, 20 workers) ", agentRounds)
	fmt.Fprintf(&b, "with the offline model at %g ms a word, wrapped in a provider of the benchmark's own that times every model call from `Stream` called to its stream's `io.EOF` (or `Close`), by run. ", msOf(agentWordDelay))
	fmt.Fprintf(&b, "A round runs one warm-up run (not counted), %d runs one after another (`StartRun` over Connect on h2c, then `WatchRun` to the run's last event), then %d runs at once, each of its own user; ", agentSerialRuns, agentConcurrentRuns)
	fmt.Fprintf(&b, "then it stops the instance (its queue would take the baseline's jobs) and times River alone on the same database: a `riverq.Queue` whose handler notes when `Work` starts, and %d jobs inserted one at a time with `EnqueueTx` in a transaction of their own, %d ms apart so that each meets an idle queue, as a step's job does, timed from the call of `Commit` (its round trip included) to the start of `Work`.\n\n", agentBaselineJobs, agentBaselineGap.Milliseconds())
	b.WriteString("**The handoff** is read from `agent_steps` afterwards: for each run and each step i of 0..3, `steps[i+1].start_time − steps[i].end_time`, 4 per run. Both are PostgreSQL's `now()`, the start of their transaction. ")
	b.WriteString("`end_time` is set by the `EndStep` transaction as it begins (`BEGIN` is its first round trip), so the handoff holds the rest of that transaction (the step's update, the token charge, queueing the next step, the run's update, the finished event, River's insert of the next job and its `pg_notify`), its commit, ")
	b.WriteString("River's notification reaching a listening instance and its fetch of the job, the dispatch to a worker, and the runner's claim statement up to its start (`start_time` is that statement's `now()`). ")
	b.WriteString("The baseline holds only the commit, the notification, the fetch and the dispatch. ")
	b.WriteString("The parts below split it with two more clocks: when `EndStep` returned (the runner's `AfterSave` hook, the benchmark's clock: the same machine's) and River's `attempted_at` on the next step's job (the `now()` of the fetch that locked it). Medians of parts do not add up to the median of the whole.\n\n")
	b.WriteString("| | handoffs | p50 | p99 | EndStep's transaction from BEGIN to its commit returned (p50) | → River's fetch of the next job (p50) | → the claim statement (p50) |\n|---|---|---|---|---|---|---|\n")
	for _, k := range []struct {
		name string
		f    agentFigures
	}{{"one run at a time", serial}, {fmt.Sprintf("%d runs at once", agentConcurrentRuns), concurrent}} {
		hs := k.f.handoffs
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s |\n", k.name, len(hs),
			short(msOf(percentile(totals(hs), 50))), short(msOf(percentile(totals(hs), 99))),
			short(msOf(percentile(partOf(hs, func(h handoff) time.Duration { return h.save }), 50))),
			short(msOf(percentile(partOf(hs, func(h handoff) time.Duration { return h.fetch }), 50))),
			short(msOf(percentile(partOf(hs, func(h handoff) time.Duration { return h.claim }), 50))))
	}
	fmt.Fprintf(&b, "| River alone (baseline; from the call of Commit) | %d | %s | %s | Commit's round trip alone: %s | %s | → `Work` started (no claim): %s |\n", len(baseline), short(bP50), short(bP99),
		short(msOf(percentile(baselinePart(baseJobs, func(j baselineJob) time.Duration { return j.commit }), 50))),
		short(msOf(percentile(baselinePart(baseJobs, func(j baselineJob) time.Duration { return j.fetch }), 50))),
		short(msOf(percentile(baselinePart(baseJobs, func(j baselineJob) time.Duration { return j.work }), 50))))
	fmt.Fprintf(&b, "\nHandoff p50 per round, one at a time: %s; %d at once: %s. Over River's p50 of the same round: %s and %s.\n\n",
		spreadOf(serial.p50).format(short), agentConcurrentRuns, spreadOf(concurrent.p50).format(short), spreadOf(serial.ratio).format(x), spreadOf(concurrent.ratio).format(x))

	b.WriteString("**A whole run's overhead** is its wall time minus its model time. The wall time is the client's clock, from the call of `StartRun` to the watch's last event (the run's end) received: what a user waits for. ")
	b.WriteString("The server's `create_time → end_time` is given too; it leaves out `StartRun`'s round trip, the last step's `EndStep` transaction (its `end_time` is that transaction's start) and the last event's delivery. ")
	b.WriteString("The overhead holds the five handoffs (the first from `StartRun`'s commit), each step's claim, its started event and its reads of the run, the events saved while a step streams (every 100 ms), the two tool calls (a search of the user's messages and artifacts, and writing an artifact), the `EndStep` transactions and the watch's delivery.\n\n")
	b.WriteString("| | runs | model time p50 | wall time p50 (client) | overhead p50 | overhead p99 | overhead / wall (median) | server's wall p50 | server's overhead p50 |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, k := range []struct {
		name string
		f    agentFigures
	}{{"one run at a time", serial}, {fmt.Sprintf("%d runs at once", agentConcurrentRuns), concurrent}} {
		rs := k.f.runs
		over := overheads(rs, client)
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", k.name, len(rs),
			ms(msOf(percentile(runsPart(rs, func(r agentRunTiming) time.Duration { return r.model }), 50))),
			ms(msOf(percentile(runsPart(rs, client), 50))),
			ms(msOf(percentile(over, 50))), ms(msOf(percentile(over, 99))), pct(medianOf(shares(rs, client))),
			ms(msOf(percentile(runsPart(rs, server), 50))), ms(msOf(percentile(overheads(rs, server), 50))))
	}
	return rows, b.String()
}

// TestAgentPhase runs only this phase and prints its rows and section
// without writing BENCHMARKS.md:
//
//	go test -tags bench -run TestAgentPhase -count=1 -v ./internal/bench/
func TestAgentPhase(t *testing.T) {
	rows, body := agentSection(measureAgents(t))
	for _, r := range rows {
		t.Logf("| %d | %s | %s | %s | %s | %s |", r.num, r.figure, r.baseline, r.target, r.measured, r.verdict)
	}
	t.Logf("\n## %s\n\n%s", agentPhaseTitle, body)
}
