package app_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/config"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/riverq"
	"github.com/parleyhq/parley/internal/store"
)

// The environment of the child process of TestAgentSurvivesCrashBetweenSteps.
const (
	childDatabase = "PARLEY_TEST_CRASH_DATABASE_URL"
	childCrashAt  = "PARLEY_TEST_CRASH_AFTER_STEP"
	crashStatus   = 3
)

func TestMain(m *testing.M) {
	if url := os.Getenv(childDatabase); url != "" {
		os.Exit(crashChild(url))
	}
	pgtest.Main(m)
}

// crashChild serves Parley on url, as `parley serve` builds it, and dies
// (os.Exit, no deferred clean-up, no shutdown) right after the step named
// by childCrashAt is saved: its result and the next step's River job are
// committed, but River never hears that the job it delivered is done.
func crashChild(url string) int {
	crashAt, err := strconv.Atoi(os.Getenv(childCrashAt))
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	cfg, err := config.Load(func(string) string { return "" }, config.ModeDev)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	cfg.DatabaseURL, cfg.Models = url, []string{llm.OfflineModel}
	// One worker: the step that crashes is still in its worker when it
	// does, so the next step's job, already committed, cannot be fetched
	// and claimed first (with more workers, on a busy machine, it was).
	cfg.AgentWorkers = 1
	key, err := auth.LoadOrCreateDevKey(os.TempDir())
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	verifier, err := auth.NewStaticVerifier(auth.Config{Issuer: apitest.Issuer}, key.JWKS())
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := app.New(ctx, cfg, app.Options{
		Listener: ln, Verifier: verifier, Provider: llm.NewOffline(0),
		Agent: func(c *agent.RunnerConfig) {
			c.AfterSave = func(t agent.Task) {
				if t.Step == crashAt {
					os.Exit(crashStatus)
				}
			}
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
	}
	return 1 // it should have crashed
}

// A process killed between saving a step and acknowledging its delivery
// strands nothing: the next step's job was committed with the step's
// result, so the run completes once an instance runs again, and no step
// runs twice.
func TestAgentSurvivesCrashBetweenSteps(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// Start the run as StartRun does: the run and its first job in one
	// transaction.
	st, err := store.Open(ctx, dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	queue, err := riverq.New(st.Pool(), func(context.Context, agent.Task) error { return errors.New("not this process") }, riverq.Config{StepTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	agents := st.Agents(queue)
	user, runID := uuid.New(), uuid.New()
	if _, _, err := agents.CreateRun(ctx, agent.NewRun{
		ID: runID, UserID: user, Goal: "Write notes on oolong tea", Model: llm.OfflineModel, Tools: agent.AllTools,
	}, 3, agent.Task{RunID: runID, Step: 0, Attempt: 1}); err != nil {
		t.Fatal(err)
	}

	// The child works the run and dies right after saving the research
	// step (index 1).
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childDatabase+"="+dbURL, childCrashAt+"=1")
	out, err := child.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != crashStatus {
		t.Fatalf("the child did not crash where it should: %v\n%s", err, out)
	}
	mid, err := agents.GetRun(ctx, user, runID)
	if err != nil {
		t.Fatal(err)
	}
	if mid.Steps[1].Status != agent.StepSucceeded || mid.Steps[2].Status != agent.StepPending || mid.Steps[2].Attempt != 1 {
		t.Fatalf("after the crash: research %s, analyze %s (attempt %d); want the research saved and analyze queued",
			mid.Steps[1].Status, mid.Steps[2].Status, mid.Steps[2].Attempt)
	}
	// The analyze step's job was committed with the research step; the
	// dead process may have fetched it already (then River holds it as
	// running until its rescue, minutes later, and the sweep queues the
	// step again sooner).
	var jobs int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM parley.river_job WHERE args->>'run_id' = $1 AND (args->>'step')::int = 2 AND state IN ('available', 'running')`, runID.String()).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if jobs != 1 {
		t.Fatalf("%d jobs for the analyze step after the crash, want 1", jobs)
	}

	// A new instance finishes the run; every step ran exactly once.
	env := apitest.New(t, apitest.Options{DatabaseURL: dbURL, AgentSweep: agent.SweepConfig{
		Every: 100 * time.Millisecond, PendingFor: time.Second, LeaseLapsedFor: 100 * time.Millisecond,
	}})
	c := env.AgentClient(t, "connect+json", user)
	stream, err := c.WatchRun(ctx, connect.NewRequest(&parleyv1.WatchRunRequest{RunId: runID.String()}))
	if err != nil {
		t.Fatal(err)
	}
	var last *parleyv1.WatchRunResponse
	started := map[parleyv1.StepName]int{}
	for stream.Receive() {
		last = stream.Msg()
		if last.GetStepStarted() != nil {
			started[last.GetStep()]++
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	run := last.GetRunFinished().GetRun()
	if run.GetStatus() != parleyv1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Fatalf("the run ended %v (%s)", run.GetStatus(), run.GetError())
	}
	for _, s := range run.GetSteps() {
		if s.GetAttempts() != 1 || started[s.GetName()] != 1 {
			t.Errorf("step %v: %d attempts, started %d times; want once", s.GetName(), s.GetAttempts(), started[s.GetName()])
		}
	}
}
