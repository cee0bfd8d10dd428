package chat

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/clock"
)

// TestMayAskAhead: the model is asked while the exchange is saved only
// when a refusal of the quota is very unlikely: always without a quota,
// never before the user's usage has been read, and then only while the
// quota has room for budgetMargin times the reservation, counting what
// this instance reserved since the read.
func TestMayAskAhead(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	fake := clock.NewFake(now)
	var used atomic.Int64
	var reads atomic.Int32
	fail := atomic.Bool{}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	g := &Generator{base: ctx, clock: fake, cfg: GeneratorConfig{Usage: func(context.Context, uuid.UUID, time.Time) (TokenUsage, error) {
		reads.Add(1)
		if fail.Load() {
			return TokenUsage{}, errors.New("database down")
		}
		return TokenUsage{Used: used.Load(), Reserved: 100}, nil
	}}}
	user := uuid.New()
	waitRead := func(n int32) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); reads.Load() < n || g.refreshing(user); {
			if time.Now().After(deadline) {
				t.Fatalf("the budget read %d did not happen", n)
			}
			time.Sleep(time.Millisecond)
		}
	}

	if !g.mayAskAhead(user, 0, 1000, now) {
		t.Error("a user without a quota was not asked ahead")
	}
	if reads.Load() != 0 {
		t.Error("a user without a quota had their usage read")
	}
	const quota, reserve = 10_000, 1_000
	if g.mayAskAhead(user, quota, reserve, now) {
		t.Error("asked ahead before the usage was ever read")
	}
	waitRead(1)
	used.Store(5_000) // 5,100 committed after the next read
	if !g.mayAskAhead(user, quota, reserve, now) {
		t.Error("not asked ahead with 9,900 of 10,000 tokens free for a 1,000-token reservation")
	}
	g.reserved(user, reserve, now)
	g.reserved(user, reserve, now)
	// 100 read, 2,000 reserved here since: 7,900 free, room for 4 × 1,000.
	if !g.mayAskAhead(user, quota, reserve, now) {
		t.Error("not asked ahead with 7,900 tokens free")
	}
	g.reserved(user, 4*reserve, now) // 6,000 reserved here: 3,900 free < 4,000
	if g.mayAskAhead(user, quota, reserve, now) {
		t.Error("asked ahead with less than 4 reservations' room left")
	}

	// A stale read is refreshed, and until then the order is the safe one.
	fake.Advance(budgetFresh)
	if g.mayAskAhead(user, quota, reserve, fake.Now()) {
		t.Error("asked ahead on a stale budget")
	}
	waitRead(2)
	if !g.mayAskAhead(user, quota, reserve, fake.Now()) {
		t.Error("not asked ahead after the refresh read 5,100 committed")
	}

	// A failing read leaves the budget stale: in order until one succeeds.
	fail.Store(true)
	fake.Advance(budgetFresh)
	if g.mayAskAhead(user, quota, reserve, fake.Now()) {
		t.Error("asked ahead on a stale budget")
	}
	waitRead(3)
	if g.mayAskAhead(user, quota, reserve, fake.Now()) {
		t.Error("asked ahead after the read failed")
	}

	// A new month is a new period.
	fail.Store(false)
	next := time.Date(2027, 1, 1, 0, 0, 1, 0, time.UTC)
	if g.mayAskAhead(user, quota, reserve, next) {
		t.Error("asked ahead in a new month on last month's budget")
	}
}

// refreshing reports whether a read of user's budget is running.
func (g *Generator) refreshing(user uuid.UUID) bool {
	g.budgets.mu.Lock()
	defer g.budgets.mu.Unlock()
	b := g.budgets.m[user]
	return b != nil && b.refreshing
}
