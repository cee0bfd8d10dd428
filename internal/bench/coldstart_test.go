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

// coldStartResult is every timed start of both servers.
type coldStartResult struct {
	parley, minimal []startTimes
	// initTotal is the package initialization of parley (GODEBUG=inittrace),
	// initTop its largest parts.
	initTotal time.Duration
	initTop   []string
	// pgConnect is what opening one PostgreSQL connection and running a
	// first query on it costs, median of a few.
	pgConnect time.Duration
}

// measureColdStart starts Parley and the minimal server in turn, one
// untimed start each first so that both binaries are in the page cache.
func measureColdStart(t *testing.T, r *rig, upstreamURL string) coldStartResult {
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
	parley()
	minimal()
	for i := range coldStartRounds {
		if i%2 == 0 {
			res.parley = append(res.parley, parley())
			res.minimal = append(res.minimal, minimal())
		} else {
			res.minimal = append(res.minimal, minimal())
			res.parley = append(res.parley, parley())
		}
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
	for _, in := range inits[:min(4, len(inits))] {
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
	rpc := pick(res.parley, func(s startTimes) time.Duration { return s.rpc })
	health := pick(res.parley, func(s startTimes) time.Duration { return s.health })
	listen := pick(res.parley, func(s startTimes) time.Duration { return s.listening })
	minimal := pick(res.minimal, func(s startTimes) time.Duration { return s.health })
	minimalListen := pick(res.minimal, func(s startTimes) time.Duration { return s.listening })
	var ratios []float64
	for i := range res.parley {
		ratios = append(ratios, msOf(res.parley[i].rpc)/msOf(res.minimal[i].health))
	}
	ratio := spreadOf(ratios)
	x := func(v float64) string { return fmt.Sprintf("%.1f×", v) }
	rows = append(rows, summaryRow{
		figure:   "Cold start: exec of `parley serve` to first answered authenticated RPC",
		baseline: "exec to first answered request of a minimal Go net/http server",
		target:   "≤ 100 ms and within 2× of the minimal server",
		measured: fmt.Sprintf("%s; minimal server %s; ratio %s", rpc.format(ms), minimal.format(ms), ratio.format(x)),
		verdict:  verdictOf(rpc.Med <= 100 && ratio.Med <= 2),
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%d timed starts of each server, alternating, after one untimed start of each (so both binaries are in the page cache). ", coldStartRounds)
	fmt.Fprintf(&b, "A start is timed from just before exec; the benchmark polls every %v on fresh connections. ", pollEvery)
	b.WriteString("Parley is polled with `GET /health` until it answers, then with an authenticated `ListConversations` until that answers; ")
	b.WriteString("its first RPC verifies an ES256 token against the JWKS it fetched at start, opens its first PostgreSQL connection and queries. ")
	b.WriteString("Medians, with the lowest and highest start in brackets:\n\n")
	b.WriteString("| | first connection accepted | first HTTP answer | first authenticated RPC answered |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| parley serve | %s | %s (`/health`) | %s |\n", listen.format(ms), health.format(ms), rpc.format(ms))
	fmt.Fprintf(&b, "| minimal net/http server | %s | %s | n/a |\n", minimalListen.format(ms), minimal.format(ms))
	fmt.Fprintf(&b, "\nParley's first RPC over the minimal server's first answer, per pair of starts: %s. Parley's `/health` over the minimal server: %s.\n",
		ratio.format(x), x(health.Med/minimal.Med))
	if res.initTotal > 0 {
		fmt.Fprintf(&b, "\nTwo costs inside Parley's start, measured separately in the same run: the package initialization of the binary (`GODEBUG=inittrace=1 parley help`) adds up to %s, the largest %s; ",
			ms(msOf(res.initTotal)), strings.Join(res.initTop, ", "))
	}
	if res.pgConnect > 0 {
		fmt.Fprintf(&b, "opening one PostgreSQL connection and running a first query on it takes %s (a new backend process), and Parley's pool opens its first connection on the first query.\n", ms(msOf(res.pgConnect)))
	}
	return rows, b.String()
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
