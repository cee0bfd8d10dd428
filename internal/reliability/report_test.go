package reliability

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
)

// tally counts what the suite did, for RELIABILITY.md.
var tally struct {
	rpcs, answers, runs atomic.Int64
	mu                  sync.Mutex
	faults              map[string]int // kind → times injected
	tests               map[string]*testResult
	load                []string
}

type testResult struct {
	runs, failed int
	took         time.Duration
}

// fault counts one injected fault of kind.
func fault(kind string) {
	tally.mu.Lock()
	defer tally.mu.Unlock()
	if tally.faults == nil {
		tally.faults = map[string]int{}
	}
	tally.faults[kind]++
}

// track records a top-level test's outcome when it ends.
func track(t *testing.T) {
	begin := time.Now()
	t.Cleanup(func() {
		tally.mu.Lock()
		defer tally.mu.Unlock()
		if tally.tests == nil {
			tally.tests = map[string]*testResult{}
		}
		r := tally.tests[t.Name()]
		if r == nil {
			r = &testResult{}
			tally.tests[t.Name()] = r
		}
		r.runs++
		if t.Failed() {
			r.failed++
		}
		r.took += time.Since(begin)
	})
}

// counting counts the RPCs and answer streams the suite's clients make.
type counting struct{}

func (counting) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		tally.rpcs.Add(1)
		return next(ctx, req)
	}
}

func (counting) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		tally.rpcs.Add(1)
		switch {
		case strings.HasSuffix(spec.Procedure, "/WatchRun"):
		case strings.HasSuffix(spec.Procedure, "Message") || strings.HasSuffix(spec.Procedure, "/ResumeGeneration"):
			tally.answers.Add(1)
		}
		return next(ctx, spec)
	}
}

func (counting) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// scenarios are RELIABILITY.md's list: each test, and what it proves.
var scenarios = []struct{ test, area, proves string }{
	{"TestPostgresRestartMidStream", "Faults", "PostgreSQL stopped while an answer streams and started again: the answer keeps streaming from memory, calls meanwhile answer `unavailable` (never `internal`), the final save is retried until the database is back and saves the whole answer, and every instance's pool serves again."},
	{"TestPostgresRestartMidAgentStep", "Faults", "PostgreSQL stopped while an agent step asks the model: the step's outcome is saved once the database is back (its last write is retried, not the step), the model is asked once per step, and the run finishes on the queue in PostgreSQL."},
	{"TestRedisRestart", "Faults", "Redis stopped mid-traffic and restarted empty: limits are shared across instances before and after and per instance meanwhile; calls and answers go on; a stop sent to another instance reaches the answer through the database even while its model is silent; a resume on another instance answers `unavailable` at once; live streams are shared again afterwards."},
	{"TestUpstreamFaults", "Faults", "The model answering 429, 500, cutting its stream, sending a malformed chunk, and going silent past `LLM_IDLE_TIMEOUT`: each answer ends with `resource_exhausted`, `unavailable` or `deadline_exceeded`, keeps (and saves, as `failed`) exactly the text streamed before the fault, shows no internals, and the next answer is whole."},
	{"TestAgentUpstreamFaults", "Faults", "The model answering 500 or 429, cutting its stream or sending a malformed chunk during an agent step: the step retries with backoff and the run succeeds on the second attempt; a model that keeps failing fails the run after `AGENT_MAX_ATTEMPTS` with a reason and no internals."},
	{"TestJWKSFaults", "Faults", "Supabase's JWKS down: cached keys keep verifying new tokens; an instance started meanwhile refuses tokens with `unauthenticated` and accepts them once the JWKS is back, without a restart; a rotated signing key (new `kid`) is accepted by every instance without a restart, the old one still."},
	{"TestSIGTERMMidStream", "Faults", "SIGTERM to one of three instances mid-stream: its client and a follower on another instance are told `unavailable` with the same partial text, saved as `interrupted`; a later resume on the third instance gets it; the others keep answering."},
	{"TestSIGTERMMidAgentStep", "Faults", "SIGTERM to the instance running an agent step: it exits cleanly within its grace period, giving the step back; another instance runs the same attempt to the end; every step is saved once."},
	{"TestThreeInstances", "Many instances", "Three `parley serve` processes on one PostgreSQL and Redis: the concurrency cap is shared; a stop sent to one instance ends an answer running on another and its follower on a third, both told `stopped` with the saved text; agent steps run exactly once; a plan change delivered by a Stripe webhook to one instance applies on all three within milliseconds."},
	{"TestLoadNothingLost", "Load", "Users send, stop (from another instance), follow, edit and regenerate answers and run agents at once over three instances, in two equal phases: every answer is saved once with exactly the text its client received, each conversation holds exactly the answers started in it, every run succeeds with each step once, no instance reports a data race, and resident memory does not grow in the second phase."},
}

// otherSuites are the parts of issue 15 that live beside the packages
// they test, listed in RELIABILITY.md too.
var otherSuites = []struct{ where, proves string }{
	{"`internal/rpc` TestAuthorizationMatrix", "Every RPC of the service descriptors, over Connect JSON, Connect binary, gRPC and gRPC-Web, with another user's ids, without a token, with anon and service_role API-key JWTs, an expired token and another project's token: refused with the right code and no side effect. A new RPC is covered without anyone adding it."},
	{"`internal/rpc` TestHostileBodies", "Deeply nested and oversized JSON, wrong field types, non-JSON bodies and wrong content types: `invalid_argument`, 415 or `resource_exhausted`, at once, with nothing saved."},
	{"`internal/server` limits tests", "Oversized bodies, gzip bombs, slow clients and streams held open: each refused or cut with a bounded cost."},
	{"Fuzz targets (`make fuzz`)", "FuzzRequestStrings and FuzzRequests (request validation, every request type, through the real service), FuzzEnvelope (the Connect/gRPC/gRPC-Web envelope as Parley reads it), FuzzDecode (page tokens), FuzzVerify (JWT parsing), FuzzReceiverVerify (QStash signatures), FuzzWebhook (Stripe webhooks), FuzzChunkDecoders (the streaming chunk decoder against openai-go's), FuzzSearchQuery (search text against the real database). Their seed corpora, crashers found included, run in `make test`."},
	{"`internal/stripeapi` and `internal/qstash` delivery tests", "Stripe events delivered twice, concurrently, out of order and late, to two instances: applied once, in Stripe's order; QStash deliveries of one agent step concurrently to two instances, late, and out of order: the step runs once."},
	{"goleak in every package's TestMain", "No test leaves a goroutine behind (internal/leaktest)."},
}

// writeReport writes RELIABILITY.md at path from what the run tallied.
func writeReport(path string, took time.Duration, code int) error {
	tally.mu.Lock()
	defer tally.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "# Reliability\n\n")
	fmt.Fprintf(&b, "What Parley's reliability suite proves, and what its last `make soak` did. This file is written by `make soak`; edit `internal/reliability/report_test.go` instead.\n\n")
	fmt.Fprintf(&b, "The suite (`internal/reliability`) runs `parley serve` as real processes, built with the race detector, on a PostgreSQL and a Redis of its own that it stops and starts, behind a fake Supabase JWKS and a fake OpenAI-compatible model that fail on request (Stripe is stripe-mock). `make test` runs every scenario once at a small size; `make soak` runs them %d times at a larger size.\n\n", soakCount())
	fmt.Fprintf(&b, "## Scenarios\n\n| test | area | what it proves |\n|---|---|---|\n")
	for _, s := range scenarios {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", s.test, s.area, s.proves)
	}
	fmt.Fprintf(&b, "\nBeside it, in the packages they test:\n\n| where | what it proves |\n|---|---|\n")
	for _, s := range otherSuites {
		fmt.Fprintf(&b, "| %s | %s |\n", s.where, s.proves)
	}
	status := "passed"
	if code != 0 {
		status = "FAILED"
	}
	fmt.Fprintf(&b, "\n## Last soak\n\n%s, on %s/%s with %d CPUs, %s in %v: **%s**.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), took.Round(time.Second), status)
	fmt.Fprintf(&b, "- RPCs made by the suite's clients: %d, of which answer streams (send, edit, regenerate, resume): %d; agent runs started: %d\n", tally.rpcs.Load(), tally.answers.Load(), tally.runs.Load())
	var kinds []string
	total := 0
	for k, n := range tally.faults {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(kinds)
	fmt.Fprintf(&b, "- Faults injected: %d (%s)\n", total, strings.Join(kinds, ", "))
	for _, l := range tally.load {
		fmt.Fprintf(&b, "- Load: %s\n", l)
	}
	fmt.Fprintf(&b, "\n| test | runs | failed | total time |\n|---|---|---|---|\n")
	names := make([]string, 0, len(tally.tests))
	for n := range tally.tests {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		r := tally.tests[n]
		fmt.Fprintf(&b, "| %s | %d | %d | %v |\n", n, r.runs, r.failed, r.took.Round(100*time.Millisecond))
	}
	fmt.Fprintf(&b, "\nNothing lost means: every assertion of every run above held. A failed run names what was lost in the test log.\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// soakCount is how many times make soak runs each scenario (SOAK_COUNT).
func soakCount() int {
	n := 0
	fmt.Sscan(os.Getenv("SOAK_COUNT"), &n)
	return max(n, 1)
}
