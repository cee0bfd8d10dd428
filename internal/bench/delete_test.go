//go:build bench

package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/store"
)

// The delete benchmark (issue 9): a conversation of deleteMessages
// messages deleted among deleteOthers messages of other users.
const (
	deleteMessages      = 2_000
	deleteOthers        = 200_000
	deleteOtherMessages = 200 // per conversation of another user
	deleteRounds        = 5
	// Without the index one delete takes tens of seconds (on a 2-core
	// machine, 27 to 40 s): it is timed once, after the rounds.
)

// chainSQL gives conversation $1 of user $2 a branch of $3 messages, each
// the child of the one before, as a long conversation has.
const chainSQL = `
INSERT INTO parley.messages (id, conversation_id, user_id, parent_id, role, content, create_time, update_time)
SELECT m.id, $1, $2, lag(m.id) OVER (ORDER BY m.n),
       CASE WHEN m.n % 2 = 1 THEN 'user' ELSE 'assistant' END, 'message ' || m.n,
       now() + m.n * interval '1 microsecond', now() + m.n * interval '1 microsecond'
FROM (SELECT gen_random_uuid() AS id, n FROM generate_series(1, $3::int) n) m`

// othersSQL writes $1 conversations of $2 messages each, every one of
// another user.
const othersSQL = `
WITH c AS (
    INSERT INTO parley.conversations (user_id, title)
    SELECT gen_random_uuid(), 'other' FROM generate_series(1, $1::int)
    RETURNING id, user_id
), m AS (
    SELECT c.id AS conversation_id, c.user_id, gen_random_uuid() AS id, n
    FROM c CROSS JOIN generate_series(1, $2::int) n
)
INSERT INTO parley.messages (id, conversation_id, user_id, parent_id, role, content, create_time, update_time)
SELECT id, conversation_id, user_id, lag(id) OVER (PARTITION BY conversation_id ORDER BY n),
       CASE WHEN n % 2 = 1 THEN 'user' ELSE 'assistant' END, 'message ' || n,
       now() + n * interval '1 microsecond', now() + n * interval '1 microsecond'
FROM m`

// dropParentIndexSQL drops the index migration 00003 adds, giving back the
// schema before it.
const dropParentIndexSQL = "DROP INDEX parley.messages_parent_id_idx"

// deleteResult is a timed delete per round of each kind, and one without
// the index.
type deleteResult struct {
	crowded, alone []time.Duration
	unindexed      time.Duration
}

// deleteDB is a database of the phase's own with a store on it.
type deleteDB struct {
	pool *pgxpool.Pool
	st   *store.Store
}

func newDeleteDB(t *testing.T, ctx context.Context) deleteDB {
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return deleteDB{pool: pool, st: store.New(pool)}
}

// timeDelete writes a conversation of deleteMessages messages and times
// deleting it through the store, as DeleteConversation does.
func (d deleteDB) timeDelete(t *testing.T, ctx context.Context) time.Duration {
	user := uuid.New()
	conv, err := d.st.CreateConversation(ctx, user, chat.NewConversation{Title: "to delete"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.pool.Exec(ctx, chainSQL, conv.ID, user, deleteMessages); err != nil {
		t.Fatal(err)
	}
	// Fresh statistics, as autovacuum keeps them on a live database.
	if _, err := d.pool.Exec(ctx, "ANALYZE parley.messages"); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if _, err := d.st.DeleteConversation(ctx, user, conv.ID); err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	var left int
	if err := d.pool.QueryRow(ctx, "SELECT count(*) FROM parley.messages WHERE conversation_id = $1", conv.ID).Scan(&left); err != nil || left != 0 {
		t.Fatalf("after the delete %d messages are left (%v)", left, err)
	}
	return took
}

// measureDelete times deleting a conversation on a database crowded with
// other users' messages and on one holding nothing else, round by round,
// then once on the crowded one without the parent_id index.
func measureDelete(t *testing.T) deleteResult {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	crowded, alone := newDeleteDB(t, ctx), newDeleteDB(t, ctx)
	if _, err := crowded.pool.Exec(ctx, othersSQL, deleteOthers/deleteOtherMessages, deleteOtherMessages); err != nil {
		t.Fatalf("write other users' messages: %v", err)
	}
	if _, err := crowded.pool.Exec(ctx, "VACUUM ANALYZE parley.messages"); err != nil {
		t.Fatal(err)
	}
	var res deleteResult
	for round := range deleteRounds {
		res.crowded = append(res.crowded, crowded.timeDelete(t, ctx))
		res.alone = append(res.alone, alone.timeDelete(t, ctx))
		t.Logf("delete round %d: among other users' messages %v, alone %v", round+1,
			res.crowded[round].Round(time.Microsecond), res.alone[round].Round(time.Microsecond))
	}
	if _, err := crowded.pool.Exec(ctx, dropParentIndexSQL); err != nil {
		t.Fatal(err)
	}
	res.unindexed = crowded.timeDelete(t, ctx)
	t.Logf("delete without the parent_id index: %v", res.unindexed.Round(time.Millisecond))
	return res
}

func deleteSection(res deleteResult) (rows []summaryRow, details string) {
	msOfAll := func(ds []time.Duration) []float64 {
		out := make([]float64, len(ds))
		for i, d := range ds {
			out[i] = msOf(d)
		}
		return out
	}
	ratios := func(num, den []time.Duration) []float64 {
		out := make([]float64, len(num))
		for i := range num {
			out[i] = msOf(num[i]) / msOf(den[i])
		}
		return out
	}
	crowded, alone := spreadOf(msOfAll(res.crowded)), spreadOf(msOfAll(res.alone))
	overAlone := spreadOf(ratios(res.crowded, res.alone))
	unindexed := fmt.Sprintf("%.1f s", res.unindexed.Seconds())
	slower := fmt.Sprintf("%.0f×", msOf(res.unindexed)/crowded.Med)
	x := func(v float64) string { return fmt.Sprintf("%.1f×", v) }
	rows = append(rows, summaryRow{
		figure:   "Delete a 2,000-message conversation among 200,000 messages of other users",
		baseline: "the same delete in a database with nothing else in it; and without the `parent_id` index (the schema before migration 00003)",
		target:   "no scan of other users' messages: within 2× of the delete alone",
		measured: fmt.Sprintf("%s; alone %s; ratio %s; without the index %s (one delete), %s the median with it", crowded.format(ms), alone.format(ms), overAlone.format(x), unindexed, slower),
		verdict:  verdictOf(overAlone.Med <= 2),
	})
	var b strings.Builder
	fmt.Fprintf(&b, "%d rounds; each writes a conversation of %d messages (one branch, each message the child of the one before), then times `store.DeleteConversation` on it, ", deleteRounds, deleteMessages)
	fmt.Fprintf(&b, "first on a database of this phase's own that also holds %d conversations of %d messages of other users (%d messages), ", deleteOthers/deleteOtherMessages, deleteOtherMessages, deleteOthers)
	b.WriteString("then on a second database holding nothing else. After the rounds the index on `messages.parent_id` is dropped and one more delete is timed on the first database: one, because it takes tens of seconds. ")
	b.WriteString("The delete is one statement: its `ON DELETE CASCADE` removes the conversation's messages, and every message removed runs the self-referencing cascade on `parent_id`, ")
	b.WriteString("which without the index scans every user's messages, once per message.\n\n")
	b.WriteString("| | delete time (median, lowest to highest round) |\n|---|---|\n")
	fmt.Fprintf(&b, "| among %d messages of other users | %s |\n", deleteOthers, crowded.format(ms))
	fmt.Fprintf(&b, "| alone in its database | %s |\n", alone.format(ms))
	fmt.Fprintf(&b, "| among them, without the `parent_id` index (one delete) | %s |\n", unindexed)
	fmt.Fprintf(&b, "\nAmong other users' messages over alone, per round: %s. Without the index, one delete took %s the median with it.\n", overAlone.format(x), slower)
	return rows, b.String()
}
