package chat

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Asking the model while the exchange is saved. Saving the exchange
// (InsertExchange, one statement) and the upstream request's first round
// trip are both on the path to the first token; when it is safe, start
// sends the upstream request first and saves concurrently, and a refused
// save cancels the request before its first byte is read.
//
// Safe means that a refusal of the quota is very unlikely, so that the
// upstream is not asked (and may not bill a prompt) for answers the quota
// would refuse. The insert stays the only authority: it still reserves the
// tokens under the row lock, and this check only decides the order. A user
// whose plan has no quota is always safe; otherwise the instance keeps a
// budget per user, read from the database in the background (never on the
// path), counting the reservations it made since, and asks ahead only when
// the quota has room for several times this answer's reservation, which
// covers what other instances may have reserved since the read.

// Tuning of the budget.
const (
	// budgetFresh is how long a read of a user's usage is trusted.
	budgetFresh = 30 * time.Second
	// budgetMargin is how many times its own reservation an answer must
	// fit in the budget's room to be asked ahead.
	budgetMargin = 4
	// budgetRefreshTimeout bounds a background read.
	budgetRefreshTimeout = 2 * time.Second
)

// userBudget is what the instance knows of one user's quota period.
type userBudget struct {
	period     time.Time // the quota period read, named by its end (nextMonth)
	committed  int64     // used + reserved, as read
	local      int64     // reserved by this instance since the read
	readAt     time.Time // zero until the first read returns
	refreshing bool
}

// budgets holds the per-user budgets of one Generator.
type budgets struct {
	mu sync.Mutex
	m  map[uuid.UUID]*userBudget
}

// maxBudgets bounds the map: past it, the oldest reads are forgotten.
const maxBudgets = 10_000

// mayAskAhead reports whether the upstream may be asked before the
// exchange is saved, and schedules a background read when the budget is
// missing or stale (so that the user's next message may be).
func (g *Generator) mayAskAhead(userID uuid.UUID, quota, reserve int64, now time.Time) bool {
	if quota <= 0 {
		return true // no quota to be wrong about
	}
	if g.cfg.Usage == nil {
		return false
	}
	period := nextMonth(now)
	g.budgets.mu.Lock()
	defer g.budgets.mu.Unlock()
	b := g.budgets.m[userID]
	fresh := b != nil && !b.readAt.IsZero() && b.period.Equal(period) && now.Sub(b.readAt) < budgetFresh
	if !fresh {
		g.refreshBudgetLocked(userID, now, b)
		return false
	}
	return b.committed+b.local+budgetMargin*reserve <= quota
}

// reserved records a reservation this instance made, and refreshes a
// budget that is getting old, off the path.
func (g *Generator) reserved(userID uuid.UUID, reserve int64, now time.Time) {
	g.budgets.mu.Lock()
	defer g.budgets.mu.Unlock()
	b := g.budgets.m[userID]
	if b == nil || !b.period.Equal(nextMonth(now)) {
		return
	}
	b.local += reserve
	if now.Sub(b.readAt) > budgetFresh/2 {
		g.refreshBudgetLocked(userID, now, b)
	}
}

// refreshBudgetLocked reads a user's usage for the quota period holding at
// in the background; g.budgets.mu is held.
func (g *Generator) refreshBudgetLocked(userID uuid.UUID, at time.Time, b *userBudget) {
	period := nextMonth(at)
	if g.cfg.Usage == nil || (b != nil && b.refreshing) {
		return
	}
	if b == nil {
		if g.budgets.m == nil {
			g.budgets.m = map[uuid.UUID]*userBudget{}
		}
		if len(g.budgets.m) >= maxBudgets {
			g.forgetOldestBudgetsLocked()
		}
		b = &userBudget{period: period}
		g.budgets.m[userID] = b
	}
	b.refreshing = true
	go func() {
		// Ends at shutdown with the base context, or after its timeout.
		ctx, cancel := context.WithTimeout(g.base, budgetRefreshTimeout)
		defer cancel()
		started := g.clock.Now()
		u, err := g.cfg.Usage(ctx, userID, at)
		g.budgets.mu.Lock()
		defer g.budgets.mu.Unlock()
		b.refreshing = false
		if err != nil {
			return // asked in order until a read succeeds
		}
		// Reservations made while the read ran may or may not be in it:
		// keeping them counted errs on the safe side.
		b.period, b.committed, b.readAt = period, u.Used+u.Reserved, started
		b.local = 0
	}()
}

func (g *Generator) forgetOldestBudgetsLocked() {
	type entry struct {
		id uuid.UUID
		at time.Time
	}
	all := make([]entry, 0, len(g.budgets.m))
	for id, b := range g.budgets.m {
		if !b.refreshing {
			all = append(all, entry{id, b.readAt})
		}
	}
	slices.SortFunc(all, func(a, b entry) int { return a.at.Compare(b.at) })
	for _, e := range all[:len(all)/2] {
		delete(g.budgets.m, e.id)
	}
}

// askedAhead is an upstream request sent before its exchange was saved.
type askedAhead struct {
	done   chan struct{}
	stream ModelStream
	err    error
}

// askAhead sends the first turn's request in the background, under the
// generation's context.
func askAhead(ctx context.Context, provider Provider, req ModelRequest) *askedAhead {
	a := &askedAhead{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		defer func() {
			if p := recover(); p != nil {
				a.stream, a.err = nil, fmt.Errorf("model provider panicked: %v", p)
			}
		}()
		a.stream, a.err = provider.Stream(ctx, req)
	}()
	return a
}

// take waits for the request's answer.
func (a *askedAhead) take() (ModelStream, error) {
	<-a.done
	return a.stream, a.err
}

// abandon closes the stream once it has opened; the caller has canceled
// its context, which ends the request.
func (a *askedAhead) abandon() {
	go func() {
		<-a.done
		if a.stream != nil {
			a.stream.Close()
		}
	}()
}
