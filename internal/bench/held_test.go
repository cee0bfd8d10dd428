//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

const (
	// heldStreams is how many answers are held open at once.
	heldStreams = 2000
	// heldWarmup streams run first, whole, so pools and caches are warm
	// before the idle memory is read.
	heldWarmup = 32
	// heldOpeners open streams concurrently.
	heldOpeners = 64
)

// perfEnv names a directory: when it is set, the benchmark builds its
// binaries with their symbols and records a perf profile (perf record -g)
// of each server process while the held deltas are released, for
// perf report -i DIR/parley-held-release.perf --children --sort symbol.
// The symbols make the binaries larger, so the cold start figures of such
// a run are not the shipped binary's, and the sampling costs the servers
// CPU, so its CPU per delta is higher than a plain run's.
const perfEnv = "PARLEY_BENCH_PERF"

// perfRecord starts perf record on p's process into out, and returns the
// function that stops it and waits for the file.
func perfRecord(t *testing.T, p *proc, out string) (stop func()) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("perf", "record", "-F", "2999", "-g", "-p", strconv.Itoa(p.pid()), "-o", out)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s is set, but perf does not start: %v", perfEnv, err)
	}
	time.Sleep(300 * time.Millisecond) // perf attaches
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		// perf writes its file on SIGINT and then dies of it.
		_ = cmd.Wait()
		if info, err := os.Stat(out); err != nil || info.Size() == 0 {
			t.Errorf("perf record wrote no profile to %s (%v, %v)", out, err, cmd.ProcessState)
			return
		}
		t.Logf("perf profile of %s: %s", p.name, out)
	}
}

// heldResult is the concurrent-streams figure.
type heldResult struct {
	streams                   int
	idleRSS, heldRSS, doneRSS int64
	peakRSS                   int64
	openTook, deliverTook     time.Duration
	delivered, failed         int
	deltas                    int64
	errs                      []string
	cpu                       cpuSnapshot // while delivering
}

// measureHeld runs the held phase on Parley and then on the floor rig
// (internal/bench/floor, the relay that saves nothing), each a process of
// its own on a fake model of its own, for the same users (each answer
// takes a conversation of its own, and the floor saves nothing).
func measureHeld(t *testing.T, r *rig) (parley, floor heldResult) {
	users := newUsers(t, r.auth, r.store, repeat(heldStreams+heldWarmup, 1), "bench")
	parley = measureHeldOn(t, users, func(mockURL string) *proc {
		return r.startParley(t, "parley-held", r.parleyEnv(r.dbURL, mockURL))
	})
	floorBin := buildBenchTool(t, r.root, "./internal/bench/floor")
	floor = measureHeldOn(t, users, func(mockURL string) *proc {
		p := launch(t, "floor-held", floorBin, r.parleyEnv(r.dbURL, mockURL))
		p.waitHealthy(t, 30*time.Second)
		return p
	})
	return parley, floor
}

// measureHeldOn opens heldStreams answers, through the server that start
// launches, on a fake model that holds every delta until released; reads
// the server process's resident memory with all of them open and idle;
// then releases every delta and checks that each stream receives its whole
// answer in order.
func measureHeldOn(t *testing.T, users []*benchUser, start func(mockURL string) *proc) heldResult {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	answer := pacedAnswer
	mock := llmtest.NewServer(t, llmtest.Hold(), llmtest.Chunks(answer))
	p := start(mock.URL)
	defer p.stop()
	hc := h2cClient()
	res := heldResult{streams: heldStreams}

	// Warm up: whole answers, so connections, prepared statements and the
	// runtime's heap are in their working state.
	var wg sync.WaitGroup
	for _, u := range users[:heldWarmup] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := u.conversation(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			if r := parleyStream(ctx, u.client(hc, p.URL), id.String(), answer); r.err != nil {
				t.Errorf("warm-up stream: %v", r.err)
			}
		}()
	}
	mock.Release(heldWarmup * len(answer))
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	time.Sleep(time.Second)
	res.idleRSS = p.rss(t)

	// Open every stream; each waits for its first delta.
	var (
		opened  sync.WaitGroup
		mu      sync.Mutex
		deltas  atomic.Int64
		openSem = make(chan struct{}, heldOpeners)
	)
	begin := time.Now()
	for _, u := range users[heldWarmup:] {
		opened.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			openSem <- struct{}{}
			release := sync.OnceFunc(func() { <-openSem; opened.Done() })
			defer release()
			err := heldStream(ctx, u, hc, p.URL, answer, release, &deltas)
			mu.Lock()
			if err != nil {
				res.failed++
				if len(res.errs) < 3 {
					res.errs = append(res.errs, err.Error())
				}
			} else {
				res.delivered++
			}
			mu.Unlock()
		}()
	}
	opened.Wait()
	// A started event comes before the model is asked: wait until the
	// fake model holds every request.
	want := heldWarmup + heldStreams
	for len(mock.Requests()) < want && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	res.openTook = time.Since(begin)
	time.Sleep(time.Second)
	res.heldRSS = p.rss(t)
	t.Logf("held, %s: %d streams open in %v; RSS idle %s, held %s", p.name, heldStreams, res.openTook.Round(time.Millisecond), mib(float64(res.idleRSS)), mib(float64(res.heldRSS)))

	// Deliver: every held delta at once.
	cpuBefore := snapCPU(p.pid())
	begin = time.Now()
	stopPerf := func() {}
	if dir := os.Getenv(perfEnv); dir != "" {
		// The profile covers the release only; the CPU figures restart
		// with it, so that they count the same span.
		stopPerf = perfRecord(t, p, filepath.Join(dir, p.name+"-release.perf"))
		cpuBefore, begin = snapCPU(p.pid()), time.Now()
	}
	go mock.Release(heldStreams * len(answer))
	wg.Wait()
	stopPerf()

	res.deliverTook = time.Since(begin)
	res.cpu = snapCPU(p.pid()).sub(cpuBefore)
	res.deltas = deltas.Load()
	res.doneRSS = p.rss(t)
	_, res.peakRSS, _ = memory(p.pid())
	t.Logf("held, %s: delivered %d, failed %d in %v: %v", p.name, res.delivered, res.failed, res.deliverTook.Round(time.Millisecond), res.errs)
	return res
}

// heldStream is parleyStream for a held answer: it calls opened once the
// started event arrived, then reads and checks the whole answer.
func heldStream(ctx context.Context, u *benchUser, hc connect.HTTPClient, url string, answer []string, opened func(), deltas *atomic.Int64) error {
	id, err := u.conversation(ctx)
	if err != nil {
		return err
	}
	stream, err := u.client(hc, url).SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: id.String(), Content: prompt}))
	if err != nil {
		return err
	}
	defer stream.Close()
	var (
		seq       int64
		text      strings.Builder
		completed bool
	)
	for stream.Receive() {
		msg := stream.Msg()
		if msg.GetSeq() != seq+1 {
			return fmt.Errorf("event seq %d after %d", msg.GetSeq(), seq)
		}
		seq = msg.GetSeq()
		switch {
		case msg.GetStarted() != nil:
			opened()
		case msg.GetDelta() != nil:
			deltas.Add(1)
			text.WriteString(msg.GetDelta().GetText())
		case msg.GetCompleted() != nil:
			completed = true
		}
	}
	if err := stream.Err(); err != nil {
		return err
	}
	if want := strings.Join(answer, ""); text.String() != want || !completed {
		return fmt.Errorf("received %d of %d bytes, completed %v", text.Len(), len(want), completed)
	}
	return nil
}

// perStream is the resident memory an idle held stream costs.
func (h heldResult) perStream() float64 { return float64(h.heldRSS-h.idleRSS) / float64(h.streams) }

// perDelta is the server's CPU per relayed delta during the release, µs.
func (h heldResult) perDelta() float64 { return usOf(h.cpu.parley) / float64(max(h.deltas, 1)) }

// whole reports whether every held stream was delivered whole.
func (h heldResult) whole() bool { return h.failed == 0 && h.delivered == h.streams }

func heldSection(h, floor heldResult) (rows []summaryRow, details string) {
	perStream := h.perStream()
	all := h.whole()
	delivered := fmt.Sprintf("%d of %d streams held open, all delivered whole and in order", h.delivered, h.streams)
	if !all {
		delivered = fmt.Sprintf("%d of %d streams delivered whole, %d failed", h.delivered, h.streams, h.failed)
	}
	floorNote := fmt.Sprintf("; floor rig (a relay that saves nothing) %s", kib(floor.perStream()))
	if !floor.whole() {
		floorNote += fmt.Sprintf(", %d of %d delivered whole", floor.delivered, floor.streams)
	}
	rows = append(rows, summaryRow{
		figure: "Concurrent streams held", baseline: "—",
		target:   "2,000 streams with every delta delivered; memory per idle stream ≤ 64 KiB",
		measured: fmt.Sprintf("%s; %s per idle stream%s", delivered, kib(perStream), floorNote),
		verdict:  verdictOf(all && perStream <= 64<<10),
	})
	perDelta := h.perDelta()
	rows = append(rows, summaryRow{
		figure: "Parley CPU per relayed delta", baseline: "—",
		target: "≤ 10 µs",
		measured: fmt.Sprintf("%.1f µs: the `parley serve` process's CPU time while the %d held answers' %d deltas are released at once, over the deltas (each answer's final save included, a 64th of it per delta); floor rig %.1f µs",
			perDelta, h.streams, h.deltas, floor.perDelta()),
		verdict: verdictOf(all && h.deltas > 0 && perDelta <= 10),
	})
	var b strings.Builder
	b.WriteString("Parley first, then the floor rig (`internal/bench/floor`: the same generated Connect handler over h2c and Parley's model client, relaying each delta from the handler's goroutine and saving nothing), each a process of its own on a fake model of its own, for the same users.\n\n")
	heldDetails(&b, "Parley", "the `parley serve` process", h)
	heldDetails(&b, "The floor rig", "the floor process", floor)
	return rows, b.String()
}

// heldDetails describes one server's held run.
func heldDetails(b *strings.Builder, who, process string, h heldResult) {
	fmt.Fprintf(b, "**%s.** On a fake model that sends the role chunk at once and holds every delta until the benchmark releases it. ", who)
	fmt.Fprintf(b, "After %d whole answers as a warm-up and a second of rest, the resident memory (`VmRSS` of `/proc/PID/status`) is %s. ", heldWarmup, mib(float64(h.idleRSS)))
	fmt.Fprintf(b, "Then %d users each open one answer (%d at a time, over h2c); when every request is held by the fake model (%v after the first was sent) and a second has passed, it is %s: ",
		h.streams, heldOpeners, h.openTook.Round(time.Millisecond), mib(float64(h.heldRSS)))
	fmt.Fprintf(b, "**%s per idle stream** (the difference over %d). ", kib(h.perStream()), h.streams)
	b.WriteString("That is what an operator sizes the container for: it includes the Go heap's headroom (GOGC=100 lets the heap grow to twice the live data before collecting) and the goroutine stacks. ")
	fmt.Fprintf(b, "Then all %d × %d deltas are released at once: every stream is checked byte for byte, with event seq growing by one: %d delivered, %d failed",
		h.streams, len(pacedAnswer), h.delivered, h.failed)
	if len(h.errs) > 0 {
		fmt.Fprintf(b, " (%s)", strings.Join(h.errs, "; "))
	}
	fmt.Fprintf(b, ". The %d deltas took %v to deliver (%.0f deltas/s through one process on this 2-core machine, which also runs PostgreSQL, Redis, the fake model and the clients); ",
		h.deltas, h.deliverTook.Round(time.Millisecond), float64(h.deltas)/h.deliverTook.Seconds())
	fmt.Fprintf(b, "CPU per delta meanwhile, µs (`parley` is %s): %s. Resident memory afterwards %s, peak %s.\n\n", process, h.cpu.per(int(h.deltas)), mib(float64(h.doneRSS)), mib(float64(h.peakRSS)))
}
