//go:build bench

package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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

// levelResult is one concurrency level: a baseline run and a Parley run
// per round.
type levelResult struct {
	load   load
	base   []runStats
	parley []runStats
	cpu    []cpuSnapshot // during each Parley run
}

// added is a per-round difference between Parley's and the baseline's p-th
// percentile of what pick selects, in milliseconds.
func (lr levelResult) added(pick func(runStats) []time.Duration, p float64) spread {
	var rounds []float64
	for i := range lr.parley {
		rounds = append(rounds, msOf(percentile(pick(lr.parley[i]), p)-percentile(pick(lr.base[i]), p)))
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
	for _, r := range lr.parley {
		streams += r.streams
		failed += r.failed
		deltas += r.deltas
		errs = append(errs, r.errs...)
	}
	return streams, failed, deltas, errs
}

// measureStreaming runs every load in streamLoads against the fake model
// directly and through Parley, alternating which goes first.
func measureStreaming(t *testing.T, r *rig, mock *llmtest.Server, p *proc) []levelResult {
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
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
		directOne := func(ctx context.Context, _ int) streamResult { return directStream(ctx, direct, l.answer) }
		lr := levelResult{load: l}
		for round := range streamRounds {
			runParley := func() {
				before := snapCPU(p.pid())
				st := closedLoop(ctx, l, parleyOne)
				lr.parley = append(lr.parley, st)
				lr.cpu = append(lr.cpu, snapCPU(p.pid()).sub(before))
			}
			runBase := func() { lr.base = append(lr.base, closedLoop(ctx, l, directOne)) }
			if round%2 == 0 {
				runBase()
				runParley()
			} else {
				runParley()
				runBase()
			}
			if err := ctx.Err(); err != nil {
				t.Fatalf("streaming at %d: %v", l.conc, err)
			}
		}
		streams, failed, _, errs := lr.failures()
		t.Logf("streams at %d: added TTFT p50 %s p99 %s, gaps p99 %s; %d streams, %d failed %s",
			l.conc, lr.added(ttftOf, 50).format(ms), lr.added(ttftOf, 99).format(ms), lr.added(gapsOf, 99).format(ms),
			streams, failed, strings.Join(errs, "; "))
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

	// Row 1: added TTFT.
	if one, ok := byConc[1]; ok {
		p50, p99 := one.added(ttftOf, 50), one.added(ttftOf, 99)
		rows = append(rows, summaryRow{
			figure: "Added time to first token, 1 stream", baseline: "openai-go streaming straight from the fake model",
			target: "p50 ≤ 1 ms, p99 ≤ 3 ms", measured: "p50 " + p50.format(ms) + ", p99 " + p99.format(ms),
			verdict: verdictOf(p50.Med <= 1 && p99.Med <= 3),
		})
	}
	if top, ok := byConc[256]; ok {
		p50, p99 := top.added(ttftOf, 50), top.added(ttftOf, 99)
		rows = append(rows, summaryRow{
			figure: "Added time to first token, 256 concurrent streams", baseline: "the same, 256 concurrent streams",
			target: "p99 ≤ 10 ms", measured: "p50 " + p50.format(ms) + ", p99 " + p99.format(ms),
			verdict: verdictOf(p99.Med <= 10),
		})
	}

	// Row 2: added gap between deltas, and delivery.
	var worstGap spread
	worstConc := 0
	allDelivered := true
	totalStreams, totalDeltas := 0, 0
	for _, lr := range levels {
		streams, failed, deltas, _ := lr.failures()
		totalStreams += streams
		totalDeltas += deltas
		if failed > 0 {
			allDelivered = false
		}
		if g := lr.added(gapsOf, 99); worstConc == 0 || g.Med > worstGap.Med {
			worstGap, worstConc = g, lr.load.conc
		}
	}
	delivered := fmt.Sprintf("every delta of %d streams (%d deltas) delivered in order", totalStreams, totalDeltas)
	if !allDelivered {
		delivered = "NOT every stream was delivered whole: see below"
	}
	rows = append(rows, summaryRow{
		figure: "Added gap between deltas", baseline: "openai-go straight from the fake model, same load",
		target:   "p99 ≤ 100 µs; every delta delivered, in order",
		measured: fmt.Sprintf("p99 %s at worst (%d streams); %s", worstGap.format(short), worstConc, delivered),
		verdict:  verdictOf(worstGap.Med <= 0.1 && allDelivered),
	})

	fmt.Fprintf(&b, "Each level runs %d rounds; a round is one run straight from the fake model (openai-go) and one through Parley, in alternating order. ", streamRounds)
	b.WriteString("Added figures are Parley's percentile minus the baseline's percentile in the same round; the table shows the median of the rounds and, in brackets, the lowest and highest round.\n\n")
	b.WriteString("| streams | answer | counted streams (baseline / Parley) | baseline TTFT p50 / p99 | Parley TTFT p50 / p99 | added TTFT p50 | added TTFT p99 | added gap p50 | added gap p99 | Parley CPU per stream |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, lr := range levels {
		bs, ps := 0, 0
		for i := range lr.parley {
			bs += lr.base[i].streams
			ps += lr.parley[i].streams
		}
		var cpu cpuSnapshot
		for _, c := range lr.cpu {
			cpu = cpu.add(c)
		}
		all := 0
		for _, r := range lr.parley {
			all += r.all
		}
		fmt.Fprintf(&b, "| %d | %d × 16 B every 20 ms | %d / %d | %s / %s | %s / %s | %s | %s | %s | %s | %s µs |\n",
			lr.load.conc, len(lr.load.answer), bs, ps,
			ms(abs(lr.base, ttftOf, 50).Med), ms(abs(lr.base, ttftOf, 99).Med),
			ms(abs(lr.parley, ttftOf, 50).Med), ms(abs(lr.parley, ttftOf, 99).Med),
			lr.added(ttftOf, 50).format(ms), lr.added(ttftOf, 99).format(ms),
			lr.added(gapsOf, 50).format(short), lr.added(gapsOf, 99).format(short),
			fmt.Sprintf("%.0f", usOf(cpu.parley)/float64(max(all, 1))))
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
	}
	b.WriteString(".\n")
	return rows, b.String()
}
