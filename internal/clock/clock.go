// Package clock lets code that follows time rules (checkpoint cadence,
// sweeps, expiries) be driven by tests without sleeping. Production code
// takes a Clock and gets Real; tests pass a Fake and move it forward.
package clock

import (
	"slices"
	"sync"
	"time"
)

// Clock tells the time and makes tickers and timers.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTicker returns a ticker that fires every d, like time.NewTicker:
	// a tick nobody has read yet makes later ticks be dropped.
	NewTicker(d time.Duration) Ticker
	// AfterFunc calls f once d has passed, like time.AfterFunc, unless
	// the returned timer is stopped first.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending call made by AfterFunc. Its methods mean what those
// of a *time.Timer made by time.AfterFunc mean.
type Timer interface {
	// Stop cancels the call; it reports whether it did, false if the
	// call already started or the timer was stopped.
	Stop() bool
	// Reset makes the call happen d from now, again if it already
	// happened or was stopped; it reports whether the timer was pending.
	Reset(d time.Duration) bool
}

// Ticker delivers ticks until stopped.
type Ticker interface {
	// C is the channel ticks arrive on.
	C() <-chan time.Time
	// Stop ends the ticks; it does not close C.
	Stop()
}

// Real is the system clock.
func Real() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

// AfterFunc returns the *time.Timer itself, which has Timer's methods.
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time { return t.t.C }
func (t realTicker) Stop()               { t.t.Stop() }

// Fake is a Clock that moves only when Advance is called. It is safe for
// concurrent use.
//
// Unlike time.AfterFunc, a Fake runs the funcs of its timers on the
// goroutine that calls Advance, with no lock held, before Advance returns.
// A test then sees what they did as soon as Advance returns, instead of
// polling for a goroutine to get there; the funcs may still use the clock
// (Now, Reset, AfterFunc). The price: a func that waits for the goroutine
// calling Advance deadlocks, where with the real clock it would not.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	tickers []*fakeTicker
	timers  []*fakeTimer  // pending ones only
	seq     uint64        // orders timers due at the same time by arming
	added   chan struct{} // closed and replaced when a ticker is made
}

// NewFake returns a Fake clock showing start.
func NewFake(start time.Time) *Fake { return &Fake{now: start, added: make(chan struct{})} }

// Now implements Clock.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTicker implements Clock.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive ticker interval")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTicker{f: f, period: d, next: f.now.Add(d), c: make(chan time.Time, 1)}
	f.tickers = append(f.tickers, t)
	close(f.added)
	f.added = make(chan struct{})
	return t
}

// AfterFunc implements Clock. A d of zero or less makes the timer due at
// once: it fires on the next Advance, Advance(0) included.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	t := &fakeTimer{f: f, fn: fn}
	t.Reset(d)
	return t
}

// Advance moves the clock forward by d. It fires every ticker whose time
// came, once per period passed (dropping ticks nobody read, as time.Ticker
// does), and calls the func of every timer whose time came, in the order
// they were due, with Now showing each timer's own time while its func
// runs. A timer that a func arms within the span fires too, so a func that
// always re-arms its own timer for no time keeps Advance from returning,
// as it would keep the real clock's timers spinning.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	target := f.now.Add(d)
	for {
		t := f.nextDue(target)
		if t == nil {
			break
		}
		// Another Advance may have run while the lock was released for
		// an earlier func: time never goes back.
		if t.when.After(f.now) {
			f.now = t.when
		}
		f.tick()
		f.unschedule(t)
		// Not deferred: the lock is released around every func, and a
		// func that panics must not leave it held or unlock it twice.
		f.mu.Unlock()
		t.fn()
		f.mu.Lock()
	}
	if target.After(f.now) {
		f.now = target
	}
	f.tick()
	f.mu.Unlock()
}

// nextDue returns the pending timer due first, if it is due by target.
// Callers hold f.mu.
func (f *Fake) nextDue(target time.Time) *fakeTimer {
	var first *fakeTimer
	for _, t := range f.timers {
		if t.when.After(target) {
			continue
		}
		if first == nil || t.when.Before(first.when) || (t.when.Equal(first.when) && t.seq < first.seq) {
			first = t
		}
	}
	return first
}

// unschedule removes t from the pending timers and reports whether it was
// there. Callers hold f.mu.
func (f *Fake) unschedule(t *fakeTimer) bool {
	i := slices.Index(f.timers, t)
	if i < 0 {
		return false
	}
	f.timers = slices.Delete(f.timers, i, i+1)
	return true
}

// tick fires the tickers whose time came. Callers hold f.mu.
func (f *Fake) tick() {
	for _, t := range f.tickers {
		if t.stopped {
			continue
		}
		for !t.next.After(f.now) {
			select {
			case t.c <- t.next:
			default:
			}
			t.next = t.next.Add(t.period)
		}
	}
}

// WaitForTickers blocks until at least n tickers that are not stopped
// exist, or timeout passes; it reports whether they do. Tests call it
// before Advance when the ticker is made by another goroutine.
func (f *Fake) WaitForTickers(n int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		live := 0
		for _, t := range f.tickers {
			if !t.stopped {
				live++
			}
		}
		added := f.added
		f.mu.Unlock()
		if live >= n {
			return true
		}
		select {
		case <-added:
		case <-deadline.C:
			return false
		}
	}
}

type fakeTimer struct {
	f    *Fake
	fn   func()
	when time.Time // guarded by f.mu, as is seq
	seq  uint64
}

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	return t.f.unschedule(t)
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	pending := t.f.unschedule(t)
	t.when = t.f.now.Add(max(d, 0))
	t.f.seq++
	t.seq = t.f.seq
	t.f.timers = append(t.f.timers, t)
	return pending
}

type fakeTicker struct {
	f       *Fake
	period  time.Duration
	next    time.Time
	c       chan time.Time
	stopped bool
}

func (t *fakeTicker) C() <-chan time.Time { return t.c }

func (t *fakeTicker) Stop() {
	t.f.mu.Lock()
	t.stopped = true
	t.f.mu.Unlock()
}
