package ratelimit

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parleyhq/parley/internal/clock"
)

// newFakeClock returns a clock that moves only when the test advances it,
// so a test steps through a window instead of sleeping.
func newFakeClock() *clock.Fake { return clock.NewFake(time.Unix(1_700_000_000, 0)) }

// newFakeMemory returns a Memory on a fake clock, and the clock.
func newFakeMemory() (*Memory, *clock.Fake) {
	fake := newFakeClock()
	return NewMemory(WithClock(fake)), fake
}

// TestMemoryWindow steps the clock to the edges of the window: after a
// spent burst an event is denied until RetryAfter and allowed from then on,
// and the whole burst is back after ResetAfter, not before.
func TestMemoryWindow(t *testing.T) {
	t.Parallel()
	limit := PerMinute(3) // one every 20s, in bursts of up to 3
	tests := []struct {
		name          string
		elapsed       time.Duration // since the burst was spent
		wantAllowed   bool
		wantRemaining int // as Peek counts: including the event it asks about
	}{
		{"DeniedJustBeforeRetryAfter", 20*time.Second - time.Nanosecond, false, 0},
		{"AllowedAtRetryAfter", 20 * time.Second, true, 1},
		{"NotFullJustBeforeResetAfter", time.Minute - time.Nanosecond, true, 2},
		{"FullAtResetAfter", time.Minute, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, fake := newFakeMemory()
			ctx := context.Background()
			for range limit.Burst {
				m.Allow(ctx, "k", limit)
			}
			denied, _ := m.Allow(ctx, "k", limit)
			want := Result{Limit: limit, RetryAfter: 20 * time.Second, ResetAfter: time.Minute}
			if diff := cmp.Diff(want, denied); diff != "" {
				t.Fatalf("check after the burst (-want +got):\n%s", diff)
			}
			fake.Advance(tt.elapsed)
			if res := m.Peek("k", limit); res.Allowed != tt.wantAllowed || res.Remaining != tt.wantRemaining {
				t.Errorf("Peek %v later: %+v; want allowed=%v remaining=%d", tt.elapsed, res, tt.wantAllowed, tt.wantRemaining)
			}
			if res, _ := m.Allow(ctx, "k", limit); res.Allowed != tt.wantAllowed {
				t.Errorf("Allow %v later: %+v; want allowed=%v", tt.elapsed, res, tt.wantAllowed)
			}
		})
	}
}

// TestMemorySweep: the sweep drops keys whose limit has fully reset and
// keeps the others, so memory stays bounded by the active keys.
func TestMemorySweep(t *testing.T) {
	t.Parallel()
	m, fake := newFakeMemory()
	ctx := context.Background()
	m.Allow(ctx, "idle", PerMinute(1))                                  // reset a minute later
	m.Allow(ctx, "active", Limit{Rate: 1, Burst: 1, Period: time.Hour}) // reset an hour later
	fake.Advance(2 * time.Minute)
	m.Allow(ctx, "new", PerMinute(1)) // the first check past a minute sweeps
	m.mu.Lock()
	keys := slices.Sorted(maps.Keys(m.tat))
	m.mu.Unlock()
	if diff := cmp.Diff([]string{"active", "new"}, keys); diff != "" {
		t.Errorf("keys after the sweep (-want +got):\n%s", diff)
	}
}

// TestMemoryPeek: a peek tells whether an event would pass, without
// counting one.
func TestMemoryPeek(t *testing.T) {
	t.Parallel()
	m := NewMemory()
	limit := PerMinute(2)
	for range 5 {
		if res := m.Peek("k", limit); !res.Allowed || res.Remaining != 2 {
			t.Fatalf("peek on a fresh key: %+v", res)
		}
	}
	m.Allow(context.Background(), "k", limit)
	if res := m.Peek("k", limit); !res.Allowed || res.Remaining != 1 {
		t.Errorf("after one event: %+v", res)
	}
	m.Allow(context.Background(), "k", limit)
	if res := m.Peek("k", limit); res.Allowed || res.RetryAfter <= 0 {
		t.Errorf("after the burst: %+v, want denied with a retry hint", res)
	}
}
