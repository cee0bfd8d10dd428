package ratelimit

import (
	"log/slog"
	"sync"
	"time"
)

// fakeClock is a clock for Memory and Resilient that moves only when the
// test advances it, so a test steps through a window instead of sleeping.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

// Now returns the clock's current time.
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newFakeMemory returns a Memory on a fake clock, and the clock.
func newFakeMemory() (*Memory, *fakeClock) {
	clock := newFakeClock()
	m := NewMemory()
	m.now = clock.Now
	return m, clock
}

// newFakeResilient returns a Resilient on shared whose cool-down and
// in-memory fallback run on clock.
func newFakeResilient(shared Limiter, clock *fakeClock) *Resilient {
	r := NewResilient(shared, slog.New(slog.DiscardHandler))
	r.now = clock.Now
	r.local.now = clock.Now
	return r
}
