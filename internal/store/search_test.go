package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/search"
	"github.com/parleyhq/parley/internal/store"
)

// seedSearchSQL gives user $1 $2 messages and $3 artifacts, and each of $4
// other users as many: words drawn from a vocabulary of 500, so that a
// word matches about a tenth of the rows.
const seedSearchSQL = `
WITH users AS (
    SELECT $1::uuid AS id UNION ALL SELECT gen_random_uuid() FROM generate_series(1, $4::int)
), conv AS (
    INSERT INTO parley.conversations (user_id, title) SELECT id, 'seeded' FROM users RETURNING id, user_id
), msgs AS (
    INSERT INTO parley.messages (conversation_id, user_id, role, content)
    SELECT c.id, c.user_id, 'user',
           'word' || (n * 7 % 500) || ' word' || (n * 13 % 500) || ' word' || (n * 31 % 500) || ' some filler text ' || n
    FROM conv c CROSS JOIN generate_series(1, $2::int) n
)
INSERT INTO parley.artifacts (user_id, title, kind, content)
SELECT u.id, 'doc ' || n, 'text', repeat('word' || (n % 500) || ' filler ', 50)
FROM users u CROSS JOIN generate_series(1, $3::int) n`

// capture records the SQL and arguments of the queries a pool runs.
type capture struct {
	mu      sync.Mutex
	queries []pgx.TraceQueryStartData
}

func (c *capture) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queries = append(c.queries, data)
	return ctx
}

func (c *capture) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *capture) last() pgx.TraceQueryStartData {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queries[len(c.queries)-1]
}

// TestSearchPlan: for a user with many rows among other users', the search
// query (the one the store sends, with its arguments) reads the GIN
// indexes of messages and artifacts with the user's id in the index
// condition, for each text search configuration, in a custom plan and in
// the generic plan PostgreSQL switches a prepared statement to, and never
// scans a whole table.
func TestSearchPlan(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	ctx := t.Context()
	owner := openPool(t, dbURL, "")
	user := uuid.New()
	if _, err := owner.Exec(ctx, seedSearchSQL, user, 10_000, 200, 9); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(ctx, "ANALYZE parley.messages, parley.message_search, parley.artifacts, parley.conversations"); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	trace := &capture{}
	cfg.ConnConfig.Tracer = trace
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := store.New(pool)

	for _, config := range search.Configs {
		results, err := st.Search(ctx, user, search.Query{Text: "word7 filler", Config: config, Messages: true, Artifacts: true, Limit: 20})
		if err != nil {
			t.Fatal(err)
		}
		if len(results) == 0 {
			t.Fatalf("%s: the seeded words found nothing", config)
		}
		q := trace.last()
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			t.Run(config+"/"+mode, func(t *testing.T) {
				plan := explain(t, owner, mode, q)
				for _, index := range []string{"message_search_" + config + "_idx", "artifacts_search_" + config + "_idx"} {
					if !strings.Contains(plan, "Bitmap Index Scan on "+index) {
						t.Errorf("the plan does not read %s:\n%s", index, plan)
					}
				}
				for _, line := range strings.Split(plan, "\n") {
					if strings.Contains(line, "Seq Scan on message") || strings.Contains(line, "Seq Scan on artifacts") {
						t.Errorf("the plan scans a whole table (%s):\n%s", strings.TrimSpace(line), plan)
					}
				}
				// Both index conditions hold the user's id and the query.
				var conds []string
				for _, line := range strings.Split(plan, "\n") {
					if cond, ok := strings.CutPrefix(strings.TrimSpace(line), "Index Cond: "); ok && strings.Contains(cond, "@@") {
						conds = append(conds, cond)
					}
				}
				if len(conds) != 2 {
					t.Fatalf("want two text search index conditions, got %q:\n%s", conds, plan)
				}
				for _, cond := range conds {
					if !strings.Contains(cond, "user_id = ") {
						t.Errorf("index condition %q does not filter by user_id", cond)
					}
				}
			})
		}
	}
}

// explain returns the text plan of the captured query q, prepared as a
// server-side statement (as pgx's default statement cache does) and run
// under plan_cache_mode mode: EXPLAIN of the query itself would always
// plan it for its arguments, never show the generic plan.
func explain(t *testing.T, pool *pgxpool.Pool, mode string, q pgx.TraceQueryStartData) string {
	t.Helper()
	ctx := t.Context()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, sql := range []string{"SET plan_cache_mode = " + mode, "PREPARE search_plan AS " + q.SQL} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	defer conn.Exec(context.WithoutCancel(ctx), "DEALLOCATE search_plan; RESET plan_cache_mode")
	// EXPLAIN EXECUTE takes no parameters of its own: the arguments go in
	// as literals.
	params := make([]string, len(q.Args))
	for i, arg := range q.Args {
		params[i] = literal(t, arg)
	}
	rows, err := conn.Query(ctx, "EXPLAIN (FORMAT TEXT) EXECUTE search_plan("+strings.Join(params, ", ")+")")
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// literal writes one of the search query's arguments as SQL.
func literal(t *testing.T, arg any) string {
	t.Helper()
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	switch v := arg.(type) {
	case uuid.UUID:
		return quote(v.String())
	case *uuid.UUID:
		if v == nil {
			return "NULL"
		}
		return quote(v.String())
	case *float32:
		if v == nil {
			return "NULL"
		}
		return fmt.Sprint(*v)
	case string:
		return quote(v)
	case bool, int32:
		return fmt.Sprint(v)
	}
	t.Fatalf("no literal for %T", arg)
	return ""
}
