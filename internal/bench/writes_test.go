//go:build bench

package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/internal/llm/llmtest"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/store"
)

// countWritesSQL makes the database count writes: a row trigger on every
// table of the parley schema records the transaction id of each row
// written. Parley runs each write as one statement in its own transaction,
// so distinct transaction ids are write statements (round trips), whatever
// number of rows or tables one statement touches; statements that change
// no row are not counted.
const countWritesSQL = `
CREATE TABLE public.bench_writes (xid xid8 NOT NULL, tbl text NOT NULL, op text NOT NULL);
CREATE FUNCTION public.bench_count_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.bench_writes VALUES (pg_current_xact_id(), TG_TABLE_NAME, TG_OP);
    RETURN NULL;
END $$;
DO $$
DECLARE t text;
BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'parley' LOOP
        EXECUTE format('CREATE TRIGGER bench_count_write AFTER INSERT OR UPDATE OR DELETE ON parley.%I
                        FOR EACH ROW EXECUTE FUNCTION public.bench_count_write()', t);
    END LOOP;
END $$;`

// writeBatch is answers of one length, run together, and what they wrote.
type writeBatch struct {
	label    string
	chunks   int // deltas of 16 bytes, 20 ms apart
	answers  int
	untitled bool
	took     time.Duration // mean answer time seen by the client
	writes   int           // write statements
	rows     map[string]int
	failed   []string
}

// expected is the design's upper bound: one statement saves the exchange,
// one per second of generation checkpoints the text, one finishes the
// answer, and an untitled conversation's first answer also saves the
// generated title. A checkpoint statement covers every answer running on
// the instance, so answers that run together share it and the per-answer
// count can be lower.
func (w writeBatch) expected() int {
	n := 2 + int(w.took/time.Second)
	if w.untitled {
		n++
	}
	return n
}

// measureWrites runs answers of known lengths on a database of their own
// whose triggers count every write.
func measureWrites(t *testing.T, r *rig) []writeBatch {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dbURL := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, countWritesSQL); err != nil {
		t.Fatalf("install write counters: %v", err)
	}
	mock := llmtest.NewServer(t)
	p := r.startParley(t, "parley-writes", r.parleyEnv(dbURL, mock.URL))
	defer p.stop()
	st := store.New(pool)
	hc := h2cClient()

	batches := []writeBatch{
		{label: "0.3 s answer", chunks: 15, answers: 8},
		{label: "1.3 s answer (the paced answer)", chunks: 64, answers: 8},
		{label: "3.3 s answer", chunks: 165, answers: 8},
		{label: "0.3 s answer, first of an untitled conversation", chunks: 15, answers: 4, untitled: true},
	}
	for i := range batches {
		wb := &batches[i]
		title := "bench"
		if wb.untitled {
			title = ""
		}
		users := newUsers(t, r.auth, st, repeat(wb.answers, 1), title)
		answer := llmtest.FixedChunks(wb.chunks, 16)
		mock.Configure(llmtest.Chunks(answer), llmtest.Interval(chunkInterval))
		if _, err := pool.Exec(ctx, "TRUNCATE public.bench_writes"); err != nil {
			t.Fatal(err)
		}
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			took time.Duration
		)
		for _, u := range users {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id, err := u.conversation(ctx)
				if err == nil {
					res := parleyStream(ctx, u.client(hc, p.URL), id.String(), answer)
					err = res.err
					mu.Lock()
					took += res.took
					mu.Unlock()
				}
				if err != nil {
					mu.Lock()
					wb.failed = append(wb.failed, err.Error())
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		wb.took = took / time.Duration(wb.answers)
		// The answer is saved before its completed event is sent, and the
		// title before its title event; give stragglers a moment anyway.
		time.Sleep(300 * time.Millisecond)
		// River's own bookkeeping (leader election, its queue row) runs on
		// its schedule, not the answers'; its rows are listed, not counted.
		if err := pool.QueryRow(ctx, "SELECT count(DISTINCT xid) FROM public.bench_writes WHERE tbl NOT LIKE 'river\\_%'").Scan(&wb.writes); err != nil {
			t.Fatal(err)
		}
		rows, err := pool.Query(ctx, "SELECT tbl || ' ' || lower(op), count(*) FROM public.bench_writes GROUP BY 1 ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		wb.rows = map[string]int{}
		for rows.Next() {
			var name string
			var n int
			if err := rows.Scan(&name, &n); err != nil {
				t.Fatal(err)
			}
			wb.rows[name] = n
		}
		rows.Close()
		t.Logf("writes: %s: %.2f per answer (expected %d), rows %v, failed %v", wb.label, float64(wb.writes)/float64(wb.answers), wb.expected(), wb.rows, wb.failed)
	}
	return batches
}

func writesSection(batches []writeBatch) (rows []summaryRow, details string) {
	ok := true
	var parts []string
	for _, wb := range batches {
		per := float64(wb.writes) / float64(wb.answers)
		if per > float64(wb.expected()) || per < 2 || len(wb.failed) > 0 {
			ok = false
		}
		if !wb.untitled {
			parts = append(parts, fmt.Sprintf("%.1f s: %.2f", wb.took.Seconds(), per))
		}
	}
	rows = append(rows, summaryRow{
		figure: "Database writes per answer", baseline: "—", target: "O(1) + one per second of generation, counted",
		measured: "writes per answer by answer length: " + strings.Join(parts, "; ") + " (design: at most 2 + one per whole second; one checkpoint statement a second serves all answers running on an instance)",
		verdict:  verdictOf(ok),
	})
	var b strings.Builder
	b.WriteString("Counted by PostgreSQL itself, on a database of this phase's own: a row trigger on every table of the `parley` schema records the id of the transaction that wrote each row. ")
	b.WriteString("Parley runs every write as a single statement in its own transaction, so the distinct transaction ids are the write statements, i.e. the write round trips, ")
	b.WriteString("however many rows or tables one statement touches (saving an exchange inserts two messages, moves the conversation's active leaf and reserves tokens in one statement). ")
	b.WriteString("Reads (loading the conversation before the model is asked) are not writes and are not counted, and neither are River's own tables (`river_leader`, `river_queue`: its leader election and queue bookkeeping, which run every few seconds whatever the answers do); their rows are listed in the last column. ")
	b.WriteString("The answers of a batch run together, each in a fresh conversation of its own user, and nothing else writes meanwhile.\n\n")
	b.WriteString("| batch | answers | client-side answer time (mean) | write statements per answer | design (at most) | rows written, by table and operation (whole batch) |\n|---|---|---|---|---|---|\n")
	for _, wb := range batches {
		var rowParts []string
		for name, n := range wb.rows {
			rowParts = append(rowParts, fmt.Sprintf("%s %d", name, n))
		}
		note := ""
		if len(wb.failed) > 0 {
			note = " (failures: " + strings.Join(wb.failed, "; ") + ")"
		}
		fmt.Fprintf(&b, "| %s | %d | %.2f s | %.2f | %d | %s%s |\n", wb.label, wb.answers, wb.took.Seconds(),
			float64(wb.writes)/float64(wb.answers), wb.expected(), strings.Join(sortedStrings(rowParts), ", "), note)
	}
	return rows, b.String()
}
