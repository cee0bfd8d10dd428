//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/llm/llmtest"
	"github.com/parleyhq/parley/internal/ratelimit"
	"github.com/parleyhq/parley/internal/redistest"
	"github.com/parleyhq/parley/internal/rpc"
	"github.com/parleyhq/parley/internal/server"
)

// The TestProfile tests explain misses: they run the loads of TestReport
// against the same server code in-process (apitest, with Redis and rate
// limits as parley serve wires them) and write pprof profiles. They are not
// part of make bench; run one with
//
//	go test -tags bench -run TestProfileUnary -v ./internal/bench/
//
// and read it with go tool pprof -top <file>. Client and server share the
// process, so the profile shows both; the server's frames are the ones
// under net/http.(*conn).serve and the generator's goroutines.

// profileDir is where the profiles go.
func profileDir(t *testing.T) string {
	dir := filepath.Join(os.TempDir(), "parley-bench-profiles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// profileServer starts the in-process server with the production wiring of
// parley serve: Redis event log, rate limits checked on Redis, the OpenAI
// provider on a fake model.
func profileServer(t *testing.T, mock *llmtest.Server) *apitest.Env {
	limit := ratelimit.PerMinute(1_000_000)
	return apitest.New(t, apitest.Options{
		Provider:    llm.NewOpenAI(llm.OpenAIConfig{BaseURL: mock.URL}),
		Models:      []string{model},
		RedisURL:    redistest.URL(t),
		RedisPrefix: redistest.Prefix(t),
		RateLimits:  &server.RateLimits{Chat: limit, Agent: limit, General: limit},
	})
}

// cpuProfile runs fn under the CPU profiler and writes name.pprof.
func cpuProfile(t *testing.T, name string, fn func()) {
	path := filepath.Join(profileDir(t), name+".pprof")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	fn()
	pprof.StopCPUProfile()
	t.Logf("CPU profile: %s", path)
}

// envUsers makes n users of env with conversations, as newUsers does for a
// process.
func envUsers(t *testing.T, env *apitest.Env, n, convs int) []*benchUser {
	users := make([]*benchUser, n)
	for i := range users {
		id := uuid.New()
		users[i] = &benchUser{id: id, token: env.Token(t, id), st: env.Store, title: "bench"}
		for range convs {
			c, err := env.Store.CreateConversation(t.Context(), id, chat.NewConversation{Title: "bench"})
			if err != nil {
				t.Fatal(err)
			}
			users[i].convs = append(users[i].convs, c.ID)
		}
	}
	return users
}

// profileCallers starts the in-process server and makes the unary rows'
// callers on it, each with one conversation.
func profileCallers(t *testing.T) (*apitest.Env, callers) {
	env := profileServer(t, llmtest.NewServer(t))
	cs := callers{users: envUsers(t, env, unaryClients, 1)}
	for _, u := range cs.users {
		cs.convs = append(cs.convs, u.convs[0])
	}
	return env, cs
}

// TestProfileUnary profiles GetConversation from 32 callers.
func TestProfileUnary(t *testing.T) {
	env, cs := profileCallers(t)
	target := parleyTarget(env.URL, cs)
	warm, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	callLoop(warm, 0, target.get)
	cancel()
	var run unaryRun
	cpuProfile(t, "unary-get", func() { run = callLoop(t.Context(), 0, target.get) })
	t.Logf("in-process GetConversation: %.0f calls/s, errors %v", run.perSecond, run.errs)
}

// TestProfileUnaryHTTP1 profiles GetConversation called as the unary row's
// verdict calls it: 32 callers of the external load generator, HTTP/1.1
// JSON. The client is another process, so the profile is the server's
// alone.
func TestProfileUnaryHTTP1(t *testing.T) {
	env, cs := profileCallers(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	get, _ := externalCalls(cs)
	lg := startLoadgen(t, buildBenchTool(t, root, "./internal/bench/loadgen"), env.URL, get)
	lg.run(500*time.Millisecond, 0)
	var run unaryRun
	heapProfile(t, "unary-get-http1-allocs-base")
	r0, w0 := syscallCounts(t)
	cpuProfile(t, "unary-get-http1", func() { run = lg.run(3*time.Second, 0) })
	r1, w1 := syscallCounts(t)
	heapProfile(t, "unary-get-http1-allocs")
	t.Logf("in-process GetConversation over HTTP/1.1 JSON: %d calls, %.0f calls/s, errors %v; per call %.2f read and %.2f write system calls (/proc/self/io)",
		run.calls, run.perSecond, run.errs, float64(r1-r0)/float64(run.calls), float64(w1-w0)/float64(run.calls))
}

// heapProfile writes the allocation profile (every allocation since the
// process started, sampled) as name.pprof.
func heapProfile(t *testing.T, name string) {
	path := filepath.Join(profileDir(t), name+".pprof")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("allocation profile: %s", path)
}

// syscallCounts reads this process's read and write system calls so far.
func syscallCounts(t *testing.T) (reads, writes int64) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			fmt.Sscan(v, &reads)
		}
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			fmt.Sscan(v, &writes)
		}
	}
	return reads, writes
}

// TestProfileStreams profiles 64 concurrent paced answers.
func TestProfileStreams(t *testing.T) {
	mock := llmtest.NewServer(t, llmtest.Paced())
	env := profileServer(t, mock)
	l := load{conc: 64, answer: pacedAnswer, window: 3 * time.Second}
	users := envUsers(t, env, l.conc, 4)
	hc := h2cClient()
	one := func(ctx context.Context, w int) streamResult {
		id, err := users[w].conversation(ctx)
		if err != nil {
			return streamResult{err: err}
		}
		return parleyStream(ctx, users[w].client(hc, env.URL), id.String(), l.answer)
	}
	var st runStats
	cpuProfile(t, "streams-64", func() { st = closedLoop(t.Context(), l, one) })
	t.Logf("in-process streams: %d counted, %d failed %v; TTFT p50 %v p99 %v", st.streams, st.failed, st.errs, percentile(st.ttft, 50), percentile(st.ttft, 99))
}

// TestProfileHeld measures what an idle held stream keeps alive in the
// server: live heap and goroutine stacks after a full GC, per stream, and
// writes a heap profile.
func TestProfileHeld(t *testing.T) {
	const n = 500
	// Every allocation sampled, so that the bytes per stream can be read
	// by allocation site.
	rate := runtime.MemProfileRate
	defer func() { runtime.MemProfileRate = rate }()
	runtime.MemProfileRate = 1
	mock := llmtest.NewServer(t, llmtest.Hold(), llmtest.Chunks(pacedAnswer))
	env := profileServer(t, mock)
	users := envUsers(t, env, n, 1)
	hc := h2cClient()
	live := func() (heap, stack uint64, goroutines int) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc, ms.StackInuse, runtime.NumGoroutine()
	}
	heap0, stack0, g0 := live()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var opened, wg sync.WaitGroup
	for _, u := range users {
		opened.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			once := sync.OnceFunc(opened.Done)
			defer once()
			var deltas atomic.Int64
			_ = heldStream(ctx, u, hc, env.URL, pacedAnswer, once, &deltas)
		}()
	}
	opened.Wait()
	for len(mock.Requests()) < n {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	heap1, stack1, g1 := live()
	path := filepath.Join(profileDir(t), "held-heap.pprof")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	pprof.Lookup("heap").WriteTo(f, 0)
	f.Close()
	runtime.MemProfileRate = rate
	// The goroutines of the held streams, grouped by stack: which ones an
	// answer keeps, the server's and the client's.
	gpath := filepath.Join(profileDir(t), "held-goroutines.txt")
	if f, err = os.Create(gpath); err != nil {
		t.Fatal(err)
	}
	pprof.Lookup("goroutine").WriteTo(f, 1)
	f.Close()
	t.Logf("per held stream, client and server together: heap %.1f KiB, stacks %.1f KiB, %.1f goroutines; heap profile %s, goroutines %s",
		float64(heap1-heap0)/n/1024, float64(stack1-stack0)/n/1024, float64(g1-g0)/n, path, gpath)
	// The release: every held delta at once, as the held phase does, under
	// the CPU profiler.
	cpuProfile(t, "held-release", func() {
		mock.Release(n * len(pacedAnswer))
		wg.Wait()
	})
	t.Logf("released %d deltas", n*len(pacedAnswer))
}

// TestProfileOneStream profiles answers one after another, the load of the
// one-stream time to first token.
func TestProfileOneStream(t *testing.T) {
	answer := streamLoads[0].answer
	mock := llmtest.NewServer(t, llmtest.Chunks(answer), llmtest.Interval(chunkInterval))
	env := profileServer(t, mock)
	l := load{conc: 1, answer: answer, streams: 100}
	users := envUsers(t, env, 1, l.streams+warmupStreams)
	client := users[0].client(h2cClient(), env.URL)
	one := func(ctx context.Context, w int) streamResult {
		id, err := users[0].conversation(ctx)
		if err != nil {
			return streamResult{err: err}
		}
		return parleyStream(ctx, client, id.String(), l.answer)
	}
	var st runStats
	before := selfCPU()
	cpuProfile(t, "one-stream", func() { st = closedLoop(t.Context(), l, one) })
	t.Logf("in-process one stream: %d counted, %d failed %v; TTFT p50 %v p99 %v; CPU per stream (client and server) %v",
		st.streams, st.failed, st.errs, percentile(st.ttft, 50), percentile(st.ttft, 99), (selfCPU()-before)/time.Duration(st.all))
}

// timeline records when each step of one answer happened, as offsets from
// the moment the client sent the request. Answers run one at a time.
type timeline struct {
	mu    sync.Mutex
	begin time.Time
	steps map[string][]time.Duration
	seen  map[string]bool
}

func (tl *timeline) start() {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.begin, tl.seen = time.Now(), map[string]bool{}
}

// mark records step once per answer.
func (tl *timeline) mark(step string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.seen[step] {
		return
	}
	tl.seen[step] = true
	tl.steps[step] = append(tl.steps[step], time.Since(tl.begin))
}

// timedStore marks the two database calls before the model is asked.
type timedStore struct {
	chat.GenerationStore
	tl *timeline
}

func (s timedStore) LoadContext(ctx context.Context, userID, conversationID, leafID uuid.UUID, maxBytes int) (chat.ExchangeContext, error) {
	s.tl.mark("LoadContext starts")
	defer s.tl.mark("LoadContext returned")
	return s.GenerationStore.LoadContext(ctx, userID, conversationID, leafID, maxBytes)
}

func (s timedStore) InsertExchange(ctx context.Context, userID uuid.UUID, x chat.NewExchange) (*chat.Message, chat.Message, error) {
	s.tl.mark("InsertExchange starts")
	defer s.tl.mark("InsertExchange returned")
	return s.GenerationStore.InsertExchange(ctx, userID, x)
}

// timedProvider marks the upstream request and its first text.
type timedProvider struct {
	chat.Provider
	tl *timeline
}

func (p timedProvider) Stream(ctx context.Context, req chat.ModelRequest) (chat.ModelStream, error) {
	p.tl.mark("upstream request starts")
	s, err := p.Provider.Stream(ctx, req)
	p.tl.mark("upstream answered (headers)")
	if err != nil {
		return nil, err
	}
	return timedStream{ModelStream: s, tl: p.tl}, nil
}

type timedStream struct {
	chat.ModelStream
	tl *timeline
}

func (s timedStream) Recv() (chat.Delta, error) {
	d, err := s.ModelStream.Recv()
	if d.Text != "" {
		s.tl.mark("first text from upstream")
	}
	return d, err
}

// timedHandler marks when SendMessage's handler runs, after the
// interceptors (access log, errors, auth, rate limit).
type timedHandler struct {
	*rpc.ChatHandler
	tl *timeline
}

func (h timedHandler) SendMessage(ctx context.Context, req *connect.Request[parleyv1.SendMessageRequest], out *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	h.tl.mark("handler starts")
	return h.ChatHandler.SendMessage(ctx, req, out)
}

// breakdownStep is when one step of an answer happens, as the median over
// answers of its offset from the moment the client sent the message.
type breakdownStep struct {
	name string
	at   time.Duration
}

// breakdownOrder is the order of the steps of an answer.
var breakdownOrder = []string{"handler starts", "LoadContext starts", "LoadContext returned", "InsertExchange starts", "InsertExchange returned",
	"upstream request starts", "upstream answered (headers)", "first text from upstream", "client has the first delta"}

// measureBreakdown times each step between a client sending a message and
// receiving the first delta, one answer at a time, with the server in this
// process (apitest, wired as parley serve is) so that the steps can be
// marked: around the handler, the store and the provider. It also returns
// the baseline's median time to first token, measured in turn.
func measureBreakdown(t *testing.T, n int) ([]breakdownStep, time.Duration) {
	answer := streamLoads[0].answer
	mock := llmtest.NewServer(t, llmtest.Chunks(answer), llmtest.Interval(chunkInterval))
	tl := &timeline{steps: map[string][]time.Duration{}}
	limit := ratelimit.PerMinute(1_000_000)
	env := apitest.New(t, apitest.Options{
		Provider:    timedProvider{Provider: llm.NewOpenAI(llm.OpenAIConfig{BaseURL: mock.URL}), tl: tl},
		Models:      []string{model},
		RedisURL:    redistest.URL(t),
		RedisPrefix: redistest.Prefix(t),
		RateLimits:  &server.RateLimits{Chat: limit, Agent: limit, General: limit},
		WrapStore:   func(s chat.GenerationStore) chat.GenerationStore { return timedStore{GenerationStore: s, tl: tl} },
		Chat: func(h *rpc.ChatHandler) parleyv1connect.ChatServiceHandler {
			return timedHandler{ChatHandler: h, tl: tl}
		},
	})
	users := envUsers(t, env, 1, n+warmupStreams)
	client := users[0].client(h2cClient(), env.URL)
	direct := directClient(mock.URL)
	var base []time.Duration
	for i := range n + warmupStreams {
		id, err := users[0].conversation(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		tl.start()
		res := parleyStream(t.Context(), client, id.String(), answer)
		if res.err != nil {
			t.Fatal(res.err)
		}
		tl.mu.Lock()
		tl.steps["client has the first delta"] = append(tl.steps["client has the first delta"], res.ttft)
		tl.mu.Unlock()
		if b := directStream(t.Context(), direct, answer); b.err == nil && i >= warmupStreams {
			base = append(base, b.ttft)
		}
	}
	var steps []breakdownStep
	for _, name := range breakdownOrder {
		if all := tl.steps[name]; len(all) > warmupStreams {
			steps = append(steps, breakdownStep{name: name, at: percentile(all[warmupStreams:], 50)})
		}
	}
	return steps, percentile(base, 50)
}

// TestProfileTTFTBreakdown logs the steps of measureBreakdown.
func TestProfileTTFTBreakdown(t *testing.T) {
	steps, base := measureBreakdown(t, 100)
	prev := time.Duration(0)
	for _, s := range steps {
		t.Logf("%-30s at %8v (+%v)", s.name, s.at.Round(time.Microsecond), (s.at - prev).Round(time.Microsecond))
		prev = s.at
	}
	t.Logf("baseline: openai-go straight from the fake model, first text at %v", base.Round(time.Microsecond))
}

// breakdownSection is the table of measureBreakdown for the report.
func breakdownSection(steps []breakdownStep, base time.Duration) string {
	var b strings.Builder
	b.WriteString("Where the added time goes, one answer at a time (the one-stream load). The steps cannot be seen from outside a process, so this runs the same server code in the benchmark process ")
	b.WriteString("(`apitest`, wired as `parley serve` is: Redis event log, rate limits on Redis, the OpenAI provider) with marks around the handler, the store and the provider. Medians of 100 answers:\n\n")
	b.WriteString("| step | at | since the previous step | what happens in between |\n|---|---|---|---|\n")
	what := map[string]string{
		"handler starts":              "HTTP/2 request, access log, error mapping, token verification (remembered after a token's first call), rate-limit check (one Redis round trip)",
		"LoadContext starts":          "input checks",
		"LoadContext returned":        "one round trip: the conversation and its branch (recursive CTE)",
		"InsertExchange starts":       "plan, model, prompt",
		"InsertExchange returned":     "one round trip: token reservation, both messages, active leaf",
		"upstream request starts":     "the run starts: `started` event, goroutines, mirror",
		"upstream answered (headers)": "openai-go request to the fake model, which answers the headers and the role chunk at once",
		"first text from upstream":    "the fake model waits 20 ms before its first delta",
		"client has the first delta":  "emit, relay, Connect frame over h2c, client decode",
	}
	prev := time.Duration(0)
	for _, s := range steps {
		fmt.Fprintf(&b, "| %s | %s | +%s | %s |\n", s.name, ms(msOf(s.at)), ms(msOf(s.at-prev)), what[s.name])
		prev = s.at
	}
	if len(steps) > 0 {
		last := steps[len(steps)-1].at
		fmt.Fprintf(&b, "\nThe baseline, openai-go straight from the fake model, had its first delta at %s in the same loop: Parley added %s in-process here.\n", ms(msOf(base)), ms(msOf(last-base)))
	}
	return b.String()
}
