package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/search"
	"github.com/parleyhq/parley/internal/store"
)

// FuzzSearchQuery sends whatever a user may type as a search to the real
// database: every query answers results or invalid_argument naming the
// field, never an internal error, and never another user's rows.
func FuzzSearchQuery(f *testing.F) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.URL(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(pool.Close)
	st := store.New(pool)
	svc, err := search.NewService(st, "english")
	if err != nil {
		f.Fatal(err)
	}
	me, other := uuid.New(), uuid.New()
	for _, u := range []uuid.UUID{me, other} {
		c, err := st.CreateConversation(ctx, u, chat.NewConversation{Title: "fuzz"})
		if err != nil {
			f.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO parley.messages (conversation_id, user_id, role, content) VALUES ($1, $2, 'user', 'lisbon trams and tiles')`, c.ID, u); err != nil {
			f.Fatal(err)
		}
	}
	for _, seed := range []string{
		"lisbon", `"lisbon trams"`, "lisbon or porto", "-tiles trams", "\x00", "a\x00b", `"unclosed`,
		"!!!", "or or or", "-", "''", `\`, ":*", "&|!()", "ünïcödé 東京", "\xff\xfe", "   ", "",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, q string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		results, _, err := svc.Search(ctx, me, search.Request{Query: q, PageSize: 10})
		if err != nil {
			if apperr.CodeOf(err) != apperr.Invalid {
				t.Fatalf("query %q: %v (code %s); want results or invalid_argument", q, err, apperr.CodeOf(err))
			}
			return
		}
		for _, r := range results {
			if r.Kind == search.KindMessage && r.Title != "fuzz" {
				t.Fatalf("query %q returned a row that is not the user's: %+v", q, r)
			}
		}
	})
}
