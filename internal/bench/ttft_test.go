//go:build bench

package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// chunkInterval is the fake model's pace: one delta every 20 ms.
const chunkInterval = 20 * time.Millisecond

// streamRounds is how many rounds each streaming load runs per target.
const streamRounds = 3

// pacedAnswer is llmtest.Paced's answer: 64 deltas of 16 bytes.
var pacedAnswer = llmtest.FixedChunks(64, 16)

// streamLoads are the concurrency levels of the time-to-first-token plot.
// One stream alone answers briefly (2 deltas) so that a round collects 100
// first tokens in a few seconds; the concurrent levels use the paced answer,
// so the streams already open deliver deltas while new ones start.
var streamLoads = []load{
	{conc: 1, answer: llmtest.FixedChunks(2, 16), streams: 100},
	{conc: 16, answer: pacedAnswer, window: 4 * time.Second},
	{conc: 64, answer: pacedAnswer, window: 2500 * time.Millisecond},
	{conc: 256, answer: pacedAnswer, window: 2500 * time.Millisecond},
}

// levelResult is one concurrency level: a baseline run, a Parley run and a
// floor run per round.
type levelResult struct {
	load   load
	base   []runStats
	parley []runStats
	cpu    []cpuSnapshot // during each Parley run
	// floor is the floor rig (internal/bench/floor): the round trips of
	// Parley's design and nothing else.
	floor    []runStats
	floorCPU []cpuSnapshot // during each floor run
}

// added is a per-round difference between Parley's and the baseline's p-th
// percentile of what pick selects, in milliseconds.
func (lr levelResult) added(pick func(runStats) []time.Duration, p float64) spread {
	return addedOver(lr.parley, lr.base, pick, p)
}

// floorAdded is added for the floor rig.
func (lr levelResult) floorAdded(pick func(runStats) []time.Duration, p float64) spread {
	return addedOver(lr.floor, lr.base, pick, p)
}

// addedOver is the per-round difference between runs' and base's p-th
// percentile of what pick selects, in milliseconds.
func addedOver(runs, base []runStats, pick func(runStats) []time.Duration, p float64) spread {
	var rounds []float64
	for i := range runs {
		rounds = append(rounds, msOf(percentile(pick(runs[i]), p)-percentile(pick(base[i]), p)))
	}
	return spreadOf(rounds)
}

// abs is a per-round percentile of one target, in milliseconds.
func abs(runs []runStats, pick func(runStats) []time.Duration, p float64) spread {
	var rounds []float64
	for _, r := range runs {
		rounds = append(rounds, msOf(percentile(pick(r), p)))
	}
	return spreadOf(rounds)
}

func ttftOf(r runStats) []time.Duration { return r.ttft }
func gapsOf(r runStats) []time.Duration { return r.gaps }

// failures counts the Parley streams that were not delivered whole.
func (lr levelResult) failures() (streams, failed, deltas int, errs []string) {
	return failuresOf(lr.parley)
}

// failuresOf counts the streams of runs that were not delivered whole.
func failuresOf(runs []runStats) (streams, failed, deltas int, errs []string) {
	for _, r := range runs {
		streams += r.streams
		failed += r.failed
		deltas += r.deltas
		errs = append(errs, r.errs...)
	}
	return streams, failed, deltas, errs
}

// measureStreaming runs every load in streamLoads against the fake model
// directly, through Parley and through the floor rig, rotating which goes
// first.
func measureStreaming(t *testing.T, r *rig, mock *llmtest.Server, p *proc) []levelResult {
	floor := launch(t, "floor", buildBenchTool(t, r.root, "./internal/bench/floor"), r.parleyEnv(r.dbURL, mock.URL))
	floor.waitHealthy(t, 30*time.Second)
	defer floor.stop()
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	maxConc := 0
	for _, l := range streamLoads {
		maxConc = max(maxConc, l.conc)
	}
	// Enough fresh conversations for every stream a client may start (the
	// first client is the one-stream level's); more are created on the fly,
	// outside the timed part of a stream.
	convs := repeat(maxConc, 10)
	convs[0] = streamRounds*(streamLoads[0].streams+warmupStreams) + 30
	for i := 1; i < min(64, maxConc); i++ {
		convs[i] = 24
	}
	users := newUsers(t, r.auth, r.store, convs, "bench")
	httpClient := h2cClient()
	clients := make([]parleyv1connect.ChatServiceClient, len(users))
	for i, u := range users {
		clients[i] = u.client(httpClient, p.URL)
	}
	direct := directClient(mock.URL)
	// The floor saves nothing, so each user's one conversation stays
	// empty, as Parley's fresh ones are when they are loaded.
	floorHTTP := h2cClient()
	floorClients := make([]parleyv1connect.ChatServiceClient, len(users))
	floorConvs := make([]uuid.UUID, len(users))
	for i, u := range users {
		floorClients[i] = u.client(floorHTTP, floor.URL)
		c, err := r.store.CreateConversation(ctx, u.id, chat.NewConversation{Title: u.title})
		if err != nil {
			t.Fatal(err)
		}
		floorConvs[i] = c.ID
	}

	var results []levelResult
	for _, l := range streamLoads {
		mock.Configure(llmtest.Chunks(l.answer), llmtest.Interval(chunkInterval))
		parleyOne := func(ctx context.Context, w int) streamResult {
			id, err := users[w].conversation(ctx)
			if err != nil {
				return streamResult{err: err}
			}
			return parleyStream(ctx, clients[w], id.String(), l.answer)
		}
		floorOne := func(ctx context.Context, w int) streamResult {
			return parleyStream(ctx, floorClients[w], floorConvs[w].String(), l.answer)
		}
		directOne := func(ctx context.Context, _ int) streamResult { return directStream(ctx, direct, l.answer) }
		lr := levelResult{load: l}
		for round := range streamRounds {
			runParley := func() {
				before := snapCPU(p.pid())
				st := closedLoop(ctx, l, parleyOne)
				lr.parley = append(lr.parley, st)
				lr.cpu = append(lr.cpu, snapCPU(p.pid()).sub(before))
			}
			runFloor := func() {
				before := snapCPU(floor.pid())
				st := closedLoop(ctx, l, floorOne)
				lr.floor = append(lr.floor, st)
				lr.floorCPU = append(lr.floorCPU, snapCPU(floor.pid()).sub(before))
			}
			runBase := func() { lr.base = append(lr.base, closedLoop(ctx, l, directOne)) }
			// Each target takes each place in the order once in three
			// rounds.
			order := []func(){runBase, runParley, runFloor}
			for i := range order {
				order[(i+round)%len(order)]()
			}
			if err := ctx.Err(); err != nil {
				t.Fatalf("streaming at %d: %v", l.conc, err)
			}
		}
		streams, failed, _, errs := lr.failures()
		_, floorFailed, _, floorErrs := failuresOf(lr.floor)
		t.Logf("streams at %d: added TTFT p50 %s p99 %s, gaps p99 %s; %d streams, %d failed %s; floor: added TTFT p50 %s p99 %s, gaps p99 %s, %d failed %s",
			l.conc, lr.added(ttftOf, 50).format(ms), lr.added(ttftOf, 99).format(ms), lr.added(gapsOf, 99).format(ms),
			streams, failed, strings.Join(errs, "; "),
			lr.floorAdded(ttftOf, 50).format(ms), lr.floorAdded(ttftOf, 99).format(ms), lr.floorAdded(gapsOf, 99).format(ms),
			floorFailed, strings.Join(floorErrs, "; "))
		results = append(results, lr)
	}
	return results
}

// streamingSection writes rows 1 and 2 and their details.
func streamingSection(levels []levelResult) (rows []summaryRow, details string) {
	var b strings.Builder
	byConc := map[int]levelResult{}
	for _, lr := range levels {
		byConc[lr.load.conc] = lr
	}

	// floorNote is the floor rig's figure beside Parley's in a summary row.
	floorNote := func(lr levelResult, pick func(runStats) []time.Duration, ps ...float64) string {
		var parts []string
		for _, p := range ps {
			parts = append(parts, fmt.Sprintf("p%.0f %s", p, lr.floorAdded(pick, p).format(short)))
		}
		return "; floor rig (the design's round trips alone) " + strings.Join(parts, ", ")
	}

	// Row 1: added TTFT.
	if one, ok := byConc[1]; ok {
		p50, p99 := one.added(ttftOf, 50), one.added(ttftOf, 99)
		rows = append(rows, summaryRow{
			figure: "Added time to first token, 1 stream", baseline: "openai-go streaming straight from the fake model",
			target:   "p50 ≤ 1 ms, p99 ≤ 3 ms",
			measured: "p50 " + p50.format(ms) + ", p99 " + p99.format(ms) + floorNote(one, ttftOf, 50, 99),
			verdict:  verdictOf(p50.Med <= 1 && p99.Med <= 3),
		})
	}
	if top, ok := byConc[256]; ok {
		p50, p99 := top.added(ttftOf, 50), top.added(ttftOf, 99)
		rows = append(rows, summaryRow{
			figure: "Added time to first token, 256 concurrent streams", baseline: "the same, 256 concurrent streams",
			target:   "p99 ≤ 10 ms",
			measured: "p50 " + p50.format(ms) + ", p99 " + p99.format(ms) + floorNote(top, ttftOf, 50, 99),
			verdict:  verdictOf(p99.Med <= 10),
		})
	}

	// Row 2: added gap between deltas, and delivery. The target is p99 ≤
	// 100 µs at every level up to 64 streams and ≤ 1 ms at 256.
	gapLimit := func(conc int) float64 {
		if conc <= 64 {
			return 0.1
		}
		return 1
	}
	var worstLow, top spread
	lowConc := 0
	gapsMet := true
	allDelivered := true
	totalStreams, totalDeltas := 0, 0
	for _, lr := range levels {
		streams, failed, deltas, _ := lr.failures()
		totalStreams += streams
		totalDeltas += deltas
		if failed > 0 {
			allDelivered = false
		}
		g := lr.added(gapsOf, 99)
		if !(g.Med <= gapLimit(lr.load.conc)) {
			gapsMet = false
		}
		if lr.load.conc <= 64 && (lowConc == 0 || g.Med > worstLow.Med) {
			worstLow, lowConc = g, lr.load.conc
		}
		if lr.load.conc == 256 {
			top = g
		}
	}
	delivered := fmt.Sprintf("every delta of %d streams (%d deltas) delivered in order", totalStreams, totalDeltas)
	if !allDelivered {
		delivered = "NOT every stream was delivered whole: see below"
	}
	gapMeasured := fmt.Sprintf("p99 %s at worst up to 64 streams (%d streams), %s at 256", worstLow.format(short), lowConc, top.format(short))
	if lr, ok := byConc[lowConc]; ok {
		gapMeasured += fmt.Sprintf("; floor rig %s at %d", lr.floorAdded(gapsOf, 99).format(short), lowConc)
	}
	if lr, ok := byConc[256]; ok {
		gapMeasured += fmt.Sprintf(", %s at 256", lr.floorAdded(gapsOf, 99).format(short))
	}
	rows = append(rows, summaryRow{
		figure: "Added gap between deltas", baseline: "openai-go straight from the fake model, same load",
		target:   "p99 ≤ 100 µs up to 64 streams, ≤ 1 ms at 256; every delta delivered, in order",
		measured: gapMeasured + "; " + delivered,
		verdict:  verdictOf(gapsMet && allDelivered),
	})

	fmt.Fprintf(&b, "Each level runs %d rounds; a round is one run straight from the fake model (openai-go), one through Parley and one through the floor rig, each taking each place in the order once. ", streamRounds)
	b.WriteString("Added figures are a target's percentile minus the baseline's percentile in the same round; the table shows the median of the rounds and, in brackets, the lowest and highest round.\n\n")
	b.WriteString("The floor rig (`internal/bench/floor`, built like `parley` and run as its own process on the same database, Redis and fake model) is what Parley's design cannot go below on this machine: ")
	b.WriteString("it reads Parley's configuration (`internal/config`: the same pool size, statement timeout and context budget) and serves ")
	b.WriteString("the same `SendMessage` stream with connect-go over h2c, with no interceptors. Per call, in the handler's goroutine, it looks up the token's user (decoded once, remembered), checks the chat rate limit with Parley's limiter (`ratelimit.Resilient` over `ratelimit.Redis`: one `EVALSHA` of the GCRA script), ")
	b.WriteString("runs Parley's `LoadContext` statement through `store` (one PostgreSQL round trip), asks the fake model through Parley's provider (`llm.OpenAI`: openai-go's streaming request, Parley's chunk decoding) and relays each delta as one message, as it is read. ")
	b.WriteString("It saves nothing (Parley saves the exchange while the model is asked), mirrors nothing and checkpoints nothing. ")
	b.WriteString("Each cell gives Parley, then the floor rig after the dot.\n\n")
	b.WriteString("| streams | answer | counted streams (baseline / Parley / floor) | baseline TTFT p50 / p99 | TTFT p50 / p99: Parley · floor | added TTFT p50: Parley · floor | added TTFT p99: Parley · floor | added gap p50: Parley · floor | added gap p99: Parley · floor | CPU per stream, µs: Parley · floor |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	cpuPer := func(snaps []cpuSnapshot, runs []runStats) string {
		var cpu cpuSnapshot
		all := 0
		for i, c := range snaps {
			cpu = cpu.add(c)
			all += runs[i].all
		}
		return fmt.Sprintf("%.0f", usOf(cpu.parley)/float64(max(all, 1)))
	}
	for _, lr := range levels {
		bs, ps, fs := 0, 0, 0
		for i := range lr.parley {
			bs += lr.base[i].streams
			ps += lr.parley[i].streams
		}
		for _, f := range lr.floor {
			fs += f.streams
		}
		fmt.Fprintf(&b, "| %d | %d × 16 B every 20 ms | %d / %d / %d | %s / %s | %s / %s · %s / %s | %s · %s | %s · %s | %s · %s | %s · %s | %s · %s |\n",
			lr.load.conc, len(lr.load.answer), bs, ps, fs,
			ms(abs(lr.base, ttftOf, 50).Med), ms(abs(lr.base, ttftOf, 99).Med),
			ms(abs(lr.parley, ttftOf, 50).Med), ms(abs(lr.parley, ttftOf, 99).Med),
			ms(abs(lr.floor, ttftOf, 50).Med), ms(abs(lr.floor, ttftOf, 99).Med),
			lr.added(ttftOf, 50).format(ms), lr.floorAdded(ttftOf, 50).format(ms),
			lr.added(ttftOf, 99).format(ms), lr.floorAdded(ttftOf, 99).format(ms),
			lr.added(gapsOf, 50).format(short), lr.floorAdded(gapsOf, 50).format(short),
			lr.added(gapsOf, 99).format(short), lr.floorAdded(gapsOf, 99).format(short),
			cpuPer(lr.cpu, lr.parley), cpuPer(lr.floorCPU, lr.floor))
	}
	b.WriteString("\nCPU time per Parley stream (every stream of the Parley runs, counted or not), µs:\n\n")
	for _, lr := range levels {
		var cpu cpuSnapshot
		all := 0
		for i, c := range lr.cpu {
			cpu = cpu.add(c)
			all += lr.parley[i].all
		}
		fmt.Fprintf(&b, "- %d streams: %s\n", lr.load.conc, cpu.per(all))
	}
	b.WriteString("\nCPU time per floor-rig stream (every stream of the floor runs), µs:\n\n")
	for _, lr := range levels {
		var cpu cpuSnapshot
		all := 0
		for i, c := range lr.floorCPU {
			cpu = cpu.add(c)
			all += lr.floor[i].all
		}
		fmt.Fprintf(&b, "- %d streams: %s\n", lr.load.conc, strings.Replace(cpu.per(all), "parley ", "floor rig ", 1))
	}
	b.WriteString("\nDelivery: ")
	for i, lr := range levels {
		streams, failed, deltas, errs := lr.failures()
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d streams: %d answers, %d deltas, %d not delivered whole", lr.load.conc, streams, deltas, failed)
		if len(errs) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(errs, "; "))
		}
		if fstreams, ffailed, _, ferrs := failuresOf(lr.floor); ffailed > 0 {
			fmt.Fprintf(&b, "; the floor rig failed %d of %d (%s)", ffailed, fstreams, strings.Join(ferrs, "; "))
		}
	}
	b.WriteString(".\n")
	return rows, b.String()
}
