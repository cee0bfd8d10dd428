//go:build bench

package bench

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parleyhq/parley/internal/ratelimit"
	"github.com/parleyhq/parley/internal/redistest"
)

// limiterResult is the limiter on against off, and what a check costs in
// Redis.
type limiterResult struct {
	cmp comparison
	// calls and commands are counted while the limiter was on.
	calls    int64
	commands map[string]int64 // Redis commands by name
	// roundTrips is counted through a proxy, on a third process.
	roundTrips, proxiedCalls int64
	// check is testing.Benchmark of one check from this process.
	check, memoryCheck testing.BenchmarkResult
}

// active reports whether the limiter talked to Redis at all: if not, the
// binary does not check limits yet.
func (l limiterResult) active() bool { return l.scripts() > 0 }

// scripts counts the Lua script calls (the GCRA check) while on.
func (l limiterResult) scripts() int64 {
	return l.commands["evalsha"] + l.commands["eval"] + l.commands["evalsha_ro"] + l.commands["fcall"]
}

// measureLimiter compares GetConversation with the limiter on (p) and off
// (a second process with RATE_LIMIT_ENABLED=false), then counts Redis
// round trips per call through a proxy in front of Redis for a third.
func measureLimiter(t *testing.T, r *rig, cs callers, on *proc, upstreamURL string) limiterResult {
	ctx := t.Context()
	off := r.startParley(t, "parley-limiter-off", r.parleyEnv(r.dbURL, upstreamURL, "RATE_LIMIT_ENABLED", "false"))
	defer off.stop()
	rdb := redisClient(t, r.redisURL)
	onTarget, offTarget := parleyTarget(on.URL, cs), parleyTarget(off.URL, cs)

	var res limiterResult
	res.cmp = compare(ctx, "GetConversation", offTarget.get, onTarget.get, off.pid(), on.pid())

	// Exact counts: a fixed number of calls, nothing else running. The wait
	// lets the limiter's cool-down pass: calls cut at the end of a run are
	// canceled mid-check, which ratelimit.Resilient takes for a Redis
	// failure and answers from memory for a second.
	time.Sleep(1200 * time.Millisecond)
	const exactCalls = 2000
	before := commandStats(t, rdb)
	runCalls(t, onTarget.get, exactCalls)
	after := commandStats(t, rdb)
	res.calls = exactCalls
	res.commands = map[string]int64{}
	for name, n := range after {
		if d := n - before[name]; d > 0 {
			res.commands[name] = d
		}
	}
	delete(res.commands, "info") // commandStats's own

	// Round trips: a third process talks to Redis through a counting proxy.
	proxy := newRoundTripProxy(t, r.redisURL)
	proxied := r.startParley(t, "parley-limiter-proxied", r.parleyEnv(r.dbURL, upstreamURL, "REDIS_URL", proxy.url))
	defer proxied.stop()
	target := parleyTarget(proxied.URL, cs)
	runCalls(t, target.get, exactCalls) // connections, script loading
	time.Sleep(1200 * time.Millisecond)
	trips := proxy.roundTrips.Load()
	runCalls(t, target.get, exactCalls)
	time.Sleep(100 * time.Millisecond)
	res.roundTrips, res.proxiedCalls = proxy.roundTrips.Load()-trips, exactCalls

	// One check from this process, for scale.
	limiter := ratelimit.NewRedis(rdb, redistest.Prefix(t))
	limit := ratelimit.PerMinute(1_000_000)
	res.check = testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := limiter.Allow(ctx, "user:bench", limit); err != nil {
				b.Fatal(err)
			}
		}
	})
	memory := ratelimit.NewMemory()
	res.memoryCheck = testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			memory.Allow(ctx, "user:bench", limit)
		}
	})
	t.Logf("limiter: on/off %s, %d calls → %v commands, %d round trips per %d calls; check %v", res.cmp.ratio().format(pct), res.calls, res.commands, res.roundTrips, res.proxiedCalls, res.check)
	return res
}

// runCalls makes n calls from unaryClients goroutines and fails on any error.
func runCalls(t *testing.T, fn func(ctx context.Context, i int) error, n int) {
	t.Helper()
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	errs := make(chan error, unaryClients)
	for c := range unaryClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if err := fn(t.Context(), c); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func redisClient(t *testing.T, redisURL string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	return client
}

// commandStats returns how many times Redis has run each command.
func commandStats(t *testing.T, rdb *redis.Client) map[string]int64 {
	t.Helper()
	info, err := rdb.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, field := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return out
}

// roundTripProxy forwards TCP connections to Redis and counts round trips:
// on each connection, a client write that follows a server reply (or opens
// the connection) starts a new one. A pipeline is one round trip however
// many commands it carries, so checks that Parley pipelines together
// (ratelimit.Pipelined) share one; a check never takes more than one.
type roundTripProxy struct {
	url        string
	roundTrips atomic.Int64
}

func newRoundTripProxy(t *testing.T, redisURL string) *roundTripProxy {
	t.Helper()
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u.Host = ln.Addr().String()
	p := &roundTripProxy{url: u.String()}
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(client, target)
		}
	}()
	return p
}

func (p *roundTripProxy) forward(client net.Conn, target string) {
	defer client.Close()
	server, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer server.Close()
	var awaiting atomic.Bool // a request went out and no reply came back yet
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				awaiting.Store(false)
				if _, err := client.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			if !awaiting.Swap(true) {
				p.roundTrips.Add(1)
			}
			if _, err := server.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func limiterSection(l limiterResult) (rows []summaryRow, details string) {
	ratio := l.cmp.ratio()
	perCall := func(n int64, calls int64) float64 { return float64(n) / float64(max(calls, 1)) }
	if !l.active() {
		rows = append(rows, summaryRow{
			figure: "Rate limiter on versus off", baseline: "the same RPC with the limiter off (`RATE_LIMIT_ENABLED=false`)",
			target:   "≥ 90 %, exactly one Redis round trip per check",
			measured: fmt.Sprintf("pending: the binary made no limiter call to Redis (on/off throughput %s, which only measures noise)", ratio.format(pct)),
			verdict:  verdictPending,
		})
	} else {
		trips := perCall(l.roundTrips, l.proxiedCalls)
		rows = append(rows, summaryRow{
			figure: "Rate limiter on versus off", baseline: "the same RPC with the limiter off (`RATE_LIMIT_ENABLED=false`)",
			target:   "≥ 90 %, exactly one Redis round trip per check",
			measured: fmt.Sprintf("%s of the throughput with it off; %.2f scripts and at most one round trip per call (%.2f request/reply turns per call: checks that overlap share a pipelined turn)", ratio.format(pct), perCall(l.scripts(), l.calls), trips),
			verdict:  verdictOf(ratio.Med >= 0.9 && trips > 0 && trips < 1.01 && math.Abs(perCall(l.scripts(), l.calls)-1) < 0.01),
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "`GetConversation` from %d callers (different users), %v per run, %d runs per process, alternating: one process with the limiter on (limits of a million calls a minute, so every call is checked and none refused) and one with `RATE_LIMIT_ENABLED=false`. ",
		unaryClients, unaryWindow, unaryRounds)
	fmt.Fprintf(&b, "Calls per second: on %s, off %s; on/off %s.\n\n", l.cmp.rate(l.cmp.target).format(num), l.cmp.rate(l.cmp.base).format(num), ratio.format(pct))
	fmt.Fprintf(&b, "Redis work per call, counted over exactly %d calls with nothing else running: `INFO commandstats` shows ", l.calls)
	if len(l.commands) == 0 {
		b.WriteString("no command at all. ")
	} else {
		var parts []string
		for name, n := range l.commands {
			parts = append(parts, fmt.Sprintf("`%s` %.2f", strings.ToUpper(name), perCall(n, l.calls)))
		}
		b.WriteString(strings.Join(sortedStrings(parts), ", ") + " per call. ")
	}
	fmt.Fprintf(&b, "A third process, whose `REDIS_URL` points at a proxy in the benchmark that counts request/reply turns on every connection, made %d round trips for %d calls (%.3f per call). ",
		l.roundTrips, l.proxiedCalls, perCall(l.roundTrips, l.proxiedCalls))
	b.WriteString("A check that starts while another is in flight goes through go-redis's auto-pipeliner, which writes the checks waiting together as one pipeline; each is still one `EVALSHA` answered in one round trip, and the checks of one turn share its write, read and wake-ups. A check that starts alone goes straight to the connection.\n\n")
	fmt.Fprintf(&b, "One check from the benchmark process (`ratelimit.Redis.Allow`, testing.Benchmark): %s/check, %d B/op, %d allocs/op; the in-memory fallback (`ratelimit.Memory.Allow`): %s/check, %d allocs/op.\n",
		us(float64(l.check.NsPerOp())/1000), l.check.AllocedBytesPerOp(), l.check.AllocsPerOp(),
		us(float64(l.memoryCheck.NsPerOp())/1000), l.memoryCheck.AllocsPerOp())
	return rows, b.String()
}
