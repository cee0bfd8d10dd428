//go:build bench

package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// coldStartRounds is how many starts of each server are timed.
const coldStartRounds = 10

// pollEvery is how often a starting server is asked whether it answers.
const pollEvery = 200 * time.Microsecond

// startTimes is one timed start: from exec to the first accepted
// connection, to the first answer of a plain HTTP request, and (Parley
// only) to the first answered authenticated RPC.
type startTimes struct {
	listening, health, rpc time.Duration
}

// timeStart execs a server and polls it until it answers. ready is the
// authenticated call for Parley, nil for the minimal server.
func timeStart(t *testing.T, name, bin string, env map[string]string, args []string, ready func(ctx context.Context, url string) error) startTimes {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p := launch(t, name, bin, env, args...)
	defer p.stop()
	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var st startTimes
	wait := func(what string) {
		select {
		case <-p.done:
			t.Fatalf("%s exited during start: %v\n%s", name, p.waitErr, p.log.Tail(8<<10))
		case <-ctx.Done():
			t.Fatalf("%s: no %s within 30s\n%s", name, what, p.log.Tail(8<<10))
		case <-time.After(pollEvery):
		}
	}
	addr := strings.TrimPrefix(p.URL, "http://")
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			st.listening = time.Since(p.started)
			break
		}
		wait("listener")
	}
	path := "/"
	if ready != nil {
		path = "/health"
	}
	for {
		res, err := client.Get(p.URL + path)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				st.health = time.Since(p.started)
				break
			}
		}
		wait("HTTP answer")
	}
	if ready == nil {
		return st
	}
	for {
		if err := ready(ctx, p.URL); err == nil {
			st.rpc = time.Since(p.started)
			return st
		}
		wait("authenticated answer")
	}
}

// coldStartResult is every timed start of the three servers.
type coldStartResult struct {
	// floor is the minimal server linked with every package Parley links
	// (internal/bench/linkfloor): its start less the minimal server's is what
	// loading those libraries and initializing them costs, which only
	// dropping a library would remove.
	parley, minimal, floor []startTimes
	floorSize              int64
	// initTotal is the package initialization of parley (GODEBUG=inittrace),
	// initTop its largest parts.
	initTotal time.Duration
	initTop   []string
	// pgConnect is what opening one PostgreSQL connection and running a
	// first query on it costs, median of a few.
	pgConnect time.Duration
}

// measureColdStart starts Parley, the floor and the minimal server in
// turn, one untimed start each first so that every binary is in the page
// cache.
func measureColdStart(t *testing.T, r *rig, upstreamURL string) coldStartResult {
	checkFloor(t, r.root)
	floorBin := buildBenchTool(t, r.root, "./internal/bench/linkfloor")
	user := uuid.New()
	token := r.auth.token(t, user)
	env := r.parleyEnv(r.dbURL, upstreamURL)
	ready := func(ctx context.Context, url string) error {
		// A new client per call: the first answer must come over a fresh
		// connection, as a new instance's first request does.
		hc := &http.Client{Transport: &http.Transport{}}
		defer hc.CloseIdleConnections()
		c := parleyv1connect.NewChatServiceClient(hc, url, connect.WithInterceptors(apitest.Bearer(token)))
		_, err := c.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
		return err
	}
	var res coldStartResult
	res.initTotal, res.initTop = initTrace(t, r.parleyBin)
	res.pgConnect = pgConnectTime(t, r.dbURL)
	parley := func() startTimes { return timeStart(t, "parley", r.parleyBin, env, []string{"serve"}, ready) }
	minimal := func() startTimes { return timeStart(t, "minimal", r.minimalBin, nil, nil, nil) }
	floor := func() startTimes { return timeStart(t, "floor", floorBin, nil, nil, nil) }
	parley()
	floor()
	minimal()
	for i := range coldStartRounds {
		if i%2 == 0 {
			res.parley = append(res.parley, parley())
			res.floor = append(res.floor, floor())
			res.minimal = append(res.minimal, minimal())
		} else {
			res.minimal = append(res.minimal, minimal())
			res.floor = append(res.floor, floor())
			res.parley = append(res.parley, parley())
		}
	}
	if info, err := os.Stat(floorBin); err == nil {
		res.floorSize = info.Size()
	}
	return res
}

// initTrace runs `parley help` with GODEBUG=inittrace=1 and adds up the
// wall time of every package's init.
func initTrace(t *testing.T, bin string) (time.Duration, []string) {
	cmd := exec.Command(bin, "help")
	cmd.Env = []string{"GODEBUG=inittrace=1"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("inittrace: %v", err)
		return 0, nil
	}
	type pkgInit struct {
		name string
		took float64 // ms
	}
	var inits []pkgInit
	var total float64
	for _, line := range strings.Split(string(out), "\n") {
		// init internal/bytealg @0.005 ms, 0.003 ms clock, 0 bytes, 0 allocs
		f := strings.Fields(line)
		if len(f) < 7 || f[0] != "init" || f[6] != "clock," {
			continue
		}
		v, err := strconv.ParseFloat(f[4], 64)
		if err != nil {
			continue
		}
		total += v
		inits = append(inits, pkgInit{f[1], v})
	}
	slices.SortFunc(inits, func(a, b pkgInit) int { return int((b.took - a.took) * 1000) })
	var top []string
	for _, in := range inits[:min(6, len(inits))] {
		top = append(top, fmt.Sprintf("`%s` %.1f ms", in.name, in.took))
	}
	return time.Duration(total * float64(time.Millisecond)), top
}

// pgConnectTime opens a few connections to the database, each with a first
// query, and returns the median.
func pgConnectTime(t *testing.T, dbURL string) time.Duration {
	var times []time.Duration
	for range 5 {
		begin := time.Now()
		conn, err := pgx.Connect(t.Context(), dbURL)
		if err != nil {
			t.Logf("connect: %v", err)
			return 0
		}
		var n int
		err = conn.QueryRow(t.Context(), "SELECT count(*) FROM parley.conversations WHERE user_id = $1", uuid.Nil).Scan(&n)
		times = append(times, time.Since(begin))
		conn.Close(t.Context())
		if err != nil {
			t.Logf("query: %v", err)
			return 0
		}
	}
	return percentile(times, 50)
}

func pick(starts []startTimes, f func(startTimes) time.Duration) spread {
	var v []float64
	for _, s := range starts {
		v = append(v, msOf(f(s)))
	}
	return spreadOf(v)
}

func coldStartSection(res coldStartResult) (rows []summaryRow, details string) {
	health := func(s startTimes) time.Duration { return s.health }
	listening := func(s startTimes) time.Duration { return s.listening }
	rpc := pick(res.parley, func(s startTimes) time.Duration { return s.rpc })
	parleyHealth, parleyListen := pick(res.parley, health), pick(res.parley, listening)
	minimal, minimalListen := pick(res.minimal, health), pick(res.minimal, listening)
	floor, floorListen := pick(res.floor, health), pick(res.floor, listening)
	// The ratio: Parley's /health over the minimal server's first
	// answer, per round of starts (each round starts both).
	perRound := func(num, den []startTimes) spread {
		var v []float64
		for i := range min(len(num), len(den)) {
			v = append(v, msOf(num[i].health)/msOf(den[i].health))
		}
		return spreadOf(v)
	}
	ratio := perRound(res.parley, res.minimal)
	floorRatio := perRound(res.floor, res.minimal)
	overFloor := perRound(res.parley, res.floor)
	x := func(v float64) string { return fmt.Sprintf("%.2f×", v) }
	rows = append(rows, summaryRow{
		figure:   "Cold start: exec of `parley serve` to `GET /health` answered, and to first authenticated RPC answered",
		baseline: "exec to first answered request of a minimal Go net/http server",
		target:   "`/health` ≤ 2× the minimal server; first authenticated RPC ≤ 100 ms",
		measured: fmt.Sprintf("`/health` %s, minimal server %s, ratio %s (%s); first RPC %s (%s); floor (same libraries, none of Parley's code) %s, %s the minimal server",
			parleyHealth.format(ms), minimal.format(ms), ratio.format(x), verdictWord(ratio.Med <= 2), rpc.format(ms), verdictWord(rpc.Med <= 100), floor.format(ms), floorRatio.format(x)),
		verdict: verdictOf(ratio.Med <= 2 && rpc.Med <= 100),
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%d timed starts of each of three servers, alternating, after one untimed start of each (so every binary is in the page cache). ", coldStartRounds)
	fmt.Fprintf(&b, "A start is timed from just before exec; the benchmark polls every %v on fresh connections. ", pollEvery)
	b.WriteString("Parley is polled with `GET /health` until it answers, then with an authenticated `ListConversations` until that answers; ")
	b.WriteString("`/health` answers from the moment the listener opens, while the rest of the service is built (`server.Starting`), and an RPC that arrives before the service is built waits for it; ")
	b.WriteString("the first RPC verifies an ES256 token against the JWKS fetched at start, and queries PostgreSQL on the connection the pool opened in the background. ")
	b.WriteString("The floor (`internal/bench/linkfloor`) is the minimal server with a blank import of every package Parley links, standard library included, and none of Parley's own (`TestFloorImports` keeps the list equal to `go list -deps ./cmd/parley`): ")
	b.WriteString("its start less the minimal server's is what loading and initializing those libraries costs, which only dropping a library removes; Parley's start less the floor's is Parley's own. ")
	b.WriteString("Medians, with the lowest and highest start in brackets:\n\n")
	b.WriteString("| | first connection accepted | first HTTP answer | first authenticated RPC answered |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| parley serve | %s | %s (`/health`) | %s |\n", parleyListen.format(ms), parleyHealth.format(ms), rpc.format(ms))
	fmt.Fprintf(&b, "| floor: minimal server + Parley's libraries | %s | %s | n/a |\n", floorListen.format(ms), floor.format(ms))
	fmt.Fprintf(&b, "| minimal net/http server | %s | %s | n/a |\n", minimalListen.format(ms), minimal.format(ms))
	fmt.Fprintf(&b, "\nPer round of starts: Parley's `/health` over the minimal server's first answer %s (the target's ratio); the floor over the minimal server %s; Parley over the floor %s. ",
		ratio.format(x), floorRatio.format(x), overFloor.format(x))
	fmt.Fprintf(&b, "Of Parley's %s to `/health`, the minimal server's start is %s; per round, the libraries add %s (loading and initialization: the floor less the minimal server) and Parley's own code %s (Parley less the floor: its packages' initialization, configuration, logger, listener).",
		ms(parleyHealth.Med), ms(minimal.Med), perRoundDiff(res.floor, res.minimal).format(ms), perRoundDiff(res.parley, res.floor).format(ms))
	if res.floorSize > 0 {
		fmt.Fprintf(&b, " The floor's binary is %s, Parley's larger because its code uses more of each library than a blank import keeps.", mib(float64(res.floorSize)))
	}
	b.WriteString("\n")
	if res.initTotal > 0 {
		fmt.Fprintf(&b, "\nTwo costs inside Parley's start, measured separately in the same run: the package initialization of the binary (`GODEBUG=inittrace=1 parley help`) adds up to %s, the largest %s; ",
			ms(msOf(res.initTotal)), strings.Join(res.initTop, ", "))
	}
	if res.pgConnect > 0 {
		fmt.Fprintf(&b, "opening one PostgreSQL connection and running a first query on it takes %s (a new backend process), which Parley's pool does in the background from the start.\n", ms(msOf(res.pgConnect)))
	}
	return rows, b.String()
}

// perRoundDiff is a's first HTTP answer less b's, per round of starts.
func perRoundDiff(a, b []startTimes) spread {
	var v []float64
	for i := range min(len(a), len(b)) {
		v = append(v, msOf(a[i].health-b[i].health))
	}
	return spreadOf(v)
}

// verdictWord says whether one part of a row's target is met.
func verdictWord(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// sizeSection reports the binary and estimates the image.
func sizeSection(r *rig) (rows []summaryRow, details string) {
	info, err := os.Stat(r.parleyBin)
	if err != nil {
		return []summaryRow{{figure: "Image and binary", verdict: verdictFailed, measured: err.Error()}}, ""
	}
	minimal, _ := os.Stat(r.minimalBin)
	const distroless = 2 << 20 // gcr.io/distroless/static-debian12, about 2 MiB
	binary := float64(info.Size())
	image := binary + distroless
	rows = append(rows, summaryRow{
		figure: "Image and binary", baseline: "—", target: "image ≤ 40 MB; binary size reported",
		measured: fmt.Sprintf("binary %s (%.1f MB); image about %s (%.1f MB), estimated, not built here", mib(binary), binary/1e6, mib(image), image/1e6),
		verdict:  verdictOf(image <= 40e6),
	})
	var b strings.Builder
	fmt.Fprintf(&b, "The binary is built as the Dockerfile builds it (`CGO_ENABLED=0 go build %s`), in %s (with a warm build cache this is a few seconds). ",
		strings.Join(buildFlags, " "), r.buildTook.Round(time.Second))
	fmt.Fprintf(&b, "It is %d bytes. There is no Docker engine on this machine, so the image is not built: it is estimated as the binary plus "+
		"`gcr.io/distroless/static-debian12:nonroot`, about 2 MiB (CA certificates, tzdata, passwd; no shell), which is all the Dockerfile's final stage adds. ", info.Size())
	if minimal != nil {
		fmt.Fprintf(&b, "For scale, the minimal net/http server built the same way is %s.\n", mib(float64(minimal.Size())))
	}
	return rows, b.String()
}
