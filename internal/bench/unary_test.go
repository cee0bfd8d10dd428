//go:build bench

package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

const (
	// unaryClients is the number of concurrent callers.
	unaryClients = 32
	// unaryWindow is how long one run calls.
	unaryWindow = 1500 * time.Millisecond
	// unaryRounds is how many runs each target gets per RPC.
	unaryRounds = 5
	// listedConversations is how many conversations each caller has: more
	// than a default page (20), so every list returns a full page.
	listedConversations = 25
)

// The bare baseline runs sqlc's statements for the two RPCs (see
// internal/store/sqlcgen), with the arguments Parley passes: a default page
// of 20 asks for 21 rows, to know whether there is a next page.
const (
	getConversationSQL = `SELECT id, user_id, title, system_prompt, model, request_id, active_leaf_id, create_time, update_time FROM parley.conversations
WHERE id = $1 AND user_id = $2`
	listConversationsSQL = `SELECT id, user_id, title, system_prompt, model, request_id, active_leaf_id, create_time, update_time FROM parley.conversations
WHERE user_id = $1
  AND ($2::timestamptz IS NULL
       OR (update_time, id) < ($2::timestamptz, $3::uuid))
ORDER BY update_time DESC, id DESC
LIMIT $4`
	listLimit = 21
)

// conversationRow receives a row of the baseline's queries.
type conversationRow struct {
	id, userID                 uuid.UUID
	title, systemPrompt, model string
	requestID                  *string
	activeLeafID               *uuid.UUID
	createTime, updateTime     time.Time
}

func (c *conversationRow) targets() []any {
	return []any{&c.id, &c.userID, &c.title, &c.systemPrompt, &c.model, &c.requestID, &c.activeLeafID, &c.createTime, &c.updateTime}
}

// unaryTarget answers the two RPCs for caller i.
type unaryTarget struct {
	get, list func(ctx context.Context, i int) error
}

// callers are the unaryClients users of the unary figures, each with a
// conversation to get and a page of them to list.
type callers struct {
	users []*benchUser
	convs []uuid.UUID
}

func newCallers(t *testing.T, r *rig) callers {
	t.Helper()
	users := newUsers(t, r.auth, r.store, repeat(unaryClients, listedConversations), "bench")
	c := callers{users: users}
	for _, u := range users {
		id, err := u.conversation(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		c.convs = append(c.convs, id)
	}
	return c
}

// bareTarget is the baseline: pgxpool with its defaults (the same pool
// size as Parley's) running the same statements.
func bareTarget(pool *pgxpool.Pool, c callers) unaryTarget {
	return unaryTarget{
		get: func(ctx context.Context, i int) error {
			var row conversationRow
			return pool.QueryRow(ctx, getConversationSQL, c.convs[i], c.users[i].id).Scan(row.targets()...)
		},
		list: func(ctx context.Context, i int) error {
			rows, err := pool.Query(ctx, listConversationsSQL, c.users[i].id, (*time.Time)(nil), (*uuid.UUID)(nil), int32(listLimit))
			if err != nil {
				return err
			}
			defer rows.Close()
			n := 0
			for rows.Next() {
				var row conversationRow
				if err := rows.Scan(row.targets()...); err != nil {
					return err
				}
				n++
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if n != listLimit {
				return fmt.Errorf("listed %d rows, want %d", n, listLimit)
			}
			return nil
		},
	}
}

// parleyTarget calls a Parley process over Connect (binary protobuf) on
// h2c, one client per user sharing one HTTP client.
func parleyTarget(url string, c callers) unaryTarget {
	hc := h2cClient()
	clients := make([]parleyv1connect.ChatServiceClient, len(c.users))
	for i, u := range c.users {
		clients[i] = u.client(hc, url)
	}
	return unaryTarget{
		get: func(ctx context.Context, i int) error {
			_, err := clients[i].GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: c.convs[i].String()}))
			return err
		},
		list: func(ctx context.Context, i int) error {
			res, err := clients[i].ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
			if err != nil {
				return err
			}
			if n := len(res.Msg.GetConversations()); n != listLimit-1 {
				return fmt.Errorf("listed %d conversations, want %d", n, listLimit-1)
			}
			return nil
		},
	}
}

// unaryRun is one run of callLoop.
type unaryRun struct {
	perSecond float64
	calls     int64
	errs      []string
	cpu       cpuSnapshot
}

// callLoop calls fn from unaryClients goroutines for unaryWindow. Calls cut
// by the end of the window are not counted.
func callLoop(ctx context.Context, pid int, fn func(ctx context.Context, i int) error) unaryRun {
	var (
		n   atomic.Int64
		mu  sync.Mutex
		run unaryRun
		wg  sync.WaitGroup
	)
	before := snapCPU(pid)
	ctx, cancel := context.WithTimeout(ctx, unaryWindow)
	defer cancel()
	begin := time.Now()
	for c := range unaryClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := fn(ctx, c)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					mu.Lock()
					if len(run.errs) < 3 {
						run.errs = append(run.errs, err.Error())
					}
					mu.Unlock()
					continue
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	run.perSecond = float64(n.Load()) / time.Since(begin).Seconds()
	run.calls = n.Load()
	run.cpu = snapCPU(pid).sub(before)
	return run
}

// comparison is rounds of a target against its baseline.
type comparison struct {
	name         string
	base, target []unaryRun
}

// ratio is target over baseline throughput, per round.
func (c comparison) ratio() spread {
	var v []float64
	for i := range c.target {
		v = append(v, c.target[i].perSecond/c.base[i].perSecond)
	}
	return spreadOf(v)
}

func (c comparison) rate(runs []unaryRun) spread {
	var v []float64
	for _, r := range runs {
		v = append(v, r.perSecond)
	}
	return spreadOf(v)
}

func (c comparison) errors() []string {
	var out []string
	for _, runs := range [][]unaryRun{c.base, c.target} {
		for _, r := range runs {
			out = append(out, r.errs...)
		}
	}
	return out
}

// compare runs base and target in alternating order for unaryRounds
// rounds, after a short untimed warm-up of each.
func compare(ctx context.Context, name string, base, target func(ctx context.Context, i int) error, basePID, targetPID int) comparison {
	c := comparison{name: name}
	warm, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	callLoop(warm, basePID, base)
	cancel()
	warm, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
	callLoop(warm, targetPID, target)
	cancel()
	for round := range unaryRounds {
		if round%2 == 0 {
			c.base = append(c.base, callLoop(ctx, basePID, base))
			c.target = append(c.target, callLoop(ctx, targetPID, target))
		} else {
			c.target = append(c.target, callLoop(ctx, targetPID, target))
			c.base = append(c.base, callLoop(ctx, basePID, base))
		}
	}
	return c
}

// unaryResult is the unary rows' measurements: each RPC against the bare
// loop, called from an external HTTP/1.1 JSON load generator (the rows'
// verdicts) and from Connect clients on h2c in this process (reported
// beside).
type unaryResult struct {
	external, h2c []comparison
	// floor is GetConversation from the same load generator against
	// internal/bench/floorunary, in the same rounds as external[0].
	floor *comparison
}

// measureUnary compares Parley's GetConversation and ListConversations
// with the bare statements.
func measureUnary(t *testing.T, r *rig, cs callers, p *proc) unaryResult {
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, r.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	bare, parley := bareTarget(pool, cs), parleyTarget(p.URL, cs)
	var res unaryResult
	bin := buildBenchTool(t, r.root, "./internal/bench/loadgen")
	floor := launch(t, "floor-unary", buildBenchTool(t, r.root, "./internal/bench/floorunary"), map[string]string{"DATABASE_URL": r.dbURL, "REDIS_URL": r.redisURL})
	floor.waitHealthy(t, 30*time.Second)
	defer floor.stop()
	getCalls, listCalls := externalCalls(cs)
	lg, floorLG := startLoadgen(t, bin, p.URL, getCalls), startLoadgen(t, bin, floor.URL, getCalls)
	get := compareExternal(ctx, "GetConversation", bare.get, externalTarget{lg, p.pid()}, externalTarget{floorLG, floor.pid()})
	lg.stop()
	floorLG.stop()
	res.external, res.floor = append(res.external, get[0]), &get[1]
	lg = startLoadgen(t, bin, p.URL, listCalls)
	res.external = append(res.external, compareExternal(ctx, "ListConversations", bare.list, externalTarget{lg, p.pid()})...)
	lg.stop()
	res.h2c = []comparison{
		compare(ctx, "GetConversation", bare.get, parley.get, 0, p.pid()),
		compare(ctx, "ListConversations", bare.list, parley.list, 0, p.pid()),
	}
	if res.floor != nil {
		t.Logf("floor GetConversation: %s/s, ratio to bare %s, CPU per call %s µs", res.floor.rate(res.floor.target).format(num), res.floor.ratio().format(pct), res.floor.parleyCPU().format(num))
	}
	for _, c := range append(append([]comparison(nil), res.external...), res.h2c...) {
		t.Logf("%s: bare %s/s, parley %s/s, ratio %s, errors %v", c.name, c.rate(c.base).format(num), c.rate(c.target).format(num), c.ratio().format(pct), c.errors())
	}
	return res
}

// parleyCPU is Parley's own CPU time per call over a comparison's target
// runs, and its spread over the runs.
func (c comparison) parleyCPU() spread {
	var v []float64
	for _, r := range c.target {
		if r.calls > 0 {
			v = append(v, usOf(r.cpu.parley)/float64(r.calls))
		}
	}
	return spreadOf(v)
}

func num(v float64) string { return fmt.Sprintf("%.0f", v) }

func unarySection(res unaryResult, poolSize int32) (rows []summaryRow, details string) {
	var b strings.Builder
	fmt.Fprintf(&b, "%d concurrent callers, each a different user, call for %v per run; %d runs of each target, alternating which goes first, after 0.5 s of untimed warm-up each. ",
		unaryClients, unaryWindow, unaryRounds)
	b.WriteString("Parley is called with a valid ES256 token, through every interceptor (access log, errors, auth, rate limit), two ways: ")
	b.WriteString("from `internal/bench/loadgen`, an external load generator (a process of its own, like wrk: one HTTP/1.1 keep-alive connection per caller, Connect's JSON encoding, the request bytes built once, a small response parser that checks each answer is a 200 holding the caller's conversation), which is what curl and connect-web's JSON transport send and what the rows' verdicts use; ")
	b.WriteString("and over the Connect protocol (binary protobuf) on h2c from Connect clients in the benchmark process, whose HTTP/2 and protobuf work shares the two cores (reported beside). ")
	fmt.Fprintf(&b, "The baseline runs sqlc's statement for the RPC from the benchmark process with `pgxpool` and its defaults (%d connections, as Parley's pool), ", poolSize)
	b.WriteString("`QueryRow(...).Scan` for `GetConversation` and `Query` plus a scan of the 21 rows for `ListConversations`.\n\n")
	b.WriteString("| RPC | client | bare pgxpool, calls/s | server, calls/s | server / bare | server process's own CPU per call, µs | CPU per call, µs (server run; \"parley\" is the server) | CPU per call, µs (bare run) |\n|---|---|---|---|---|---|---|---|\n")
	sets := []struct {
		client string
		cmps   []comparison
	}{{"HTTP/1.1 JSON, external load generator", res.external}, {"Connect binary on h2c, in the benchmark process", res.h2c}}
	if res.floor != nil {
		f := *res.floor
		f.name = "GetConversation on the floor server"
		sets = append(sets, struct {
			client string
			cmps   []comparison
		}{"HTTP/1.1 JSON, external load generator", []comparison{f}})
	}
	for _, set := range sets {
		for _, c := range set.cmps {
			var pc, bc cpuSnapshot
			var pn, bn int64
			for i := range c.target {
				pc, pn = pc.add(c.target[i].cpu), pn+c.target[i].calls
				bc, bn = bc.add(c.base[i].cpu), bn+c.base[i].calls
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", c.name, set.client, c.rate(c.base).format(num), c.rate(c.target).format(num), c.ratio().format(pct),
				c.parleyCPU().format(num), pc.per(int(pn)), bc.per(int(bn)))
		}
	}
	for i, c := range res.external {
		ratio := c.ratio()
		measured := fmt.Sprintf("HTTP/1.1 JSON from an external load generator: %s of the bare loop (%s vs %s calls/s)", ratio.format(pct), num(c.rate(c.target).Med), num(c.rate(c.base).Med))
		if i < len(res.h2c) {
			h := res.h2c[i]
			measured += fmt.Sprintf("; Connect binary on h2c from the benchmark process (reported): %s (%s vs %s calls/s)", h.ratio().format(pct), num(h.rate(h.target).Med), num(h.rate(h.base).Med))
		}
		if errs := c.errors(); len(errs) > 0 {
			measured += "; errors: " + strings.Join(errs, "; ")
		}
		rows = append(rows, summaryRow{
			figure:   fmt.Sprintf("Unary `%s` calls per second, %d clients", c.name, unaryClients),
			baseline: "a bare pgxpool loop of the same statement",
			target:   "≥ 50 % of the bare loop, HTTP/1.1 JSON from an external load generator", measured: measured,
			verdict: verdictOf(ratio.Med >= 0.5 && len(c.errors()) == 0),
		})
	}
	if len(res.external) > 0 {
		c := res.external[0]
		cpu := c.parleyCPU()
		measured := fmt.Sprintf("%s µs per call (HTTP/1.1 JSON, external load generator)", cpu.format(num))
		if len(res.h2c) > 0 {
			measured += fmt.Sprintf("; %s µs on h2c binary (reported)", res.h2c[0].parleyCPU().format(num))
		}
		baseline := "—"
		if f := res.floor; f != nil {
			fc := f.parleyCPU()
			measured += fmt.Sprintf("; the floor server, same round trips and nothing else: %s µs (Parley/floor %.1f×), %s of the bare loop", fc.format(num), cpu.Med/fc.Med, f.ratio().format(pct))
			baseline = "internal/bench/floorunary: the same token cache, Redis check and query over HTTP/1.1 JSON, no framework"
		}
		rows = append(rows, summaryRow{
			figure: "Unary: Parley's own CPU per `GetConversation`", baseline: baseline,
			target: "≤ 100 µs", measured: measured, verdict: verdictOf(cpu.Med <= 100 && len(c.errors()) == 0),
		})
	}
	b.WriteString("\nThe floor server (`internal/bench/floorunary`, its CPU in the same column) answers `GetConversation` over HTTP/1.1 JSON doing on the wire what Parley's design must and nothing else: a lookup in a cache of verified tokens, one `EVALSHA` of the same GCRA script on go-redis, one pgx query of the same statement, and the conversation written as JSON with `encoding/json`; no Connect, protobuf, interceptors or logging. It runs in the same rounds as Parley's HTTP/1.1 runs, against the same baseline runs. ")
	b.WriteString("\n\"Parley's CPU per call\" is the `parley serve` process's CPU time (user and system, from /proc) over the calls it answered in the run, median of the runs with the lowest and highest in brackets: the figure that does not depend on the client. ")
	b.WriteString("The CPU columns show where the rest of the machine's time goes; \"unattributed\" is the machine's busy time not charged to any of these processes: other processes on the machine, and kernel work such as loopback networking.\n")
	return rows, b.String()
}
