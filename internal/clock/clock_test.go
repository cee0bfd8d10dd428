package clock_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parleyhq/parley/internal/clock"
)

func TestFake(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := clock.NewFake(start)
	tk := f.NewTicker(time.Second)
	f.Advance(999 * time.Millisecond)
	select {
	case <-tk.C():
		t.Fatal("ticked before its period")
	default:
	}
	f.Advance(time.Millisecond)
	select {
	case got := <-tk.C():
		if want := start.Add(time.Second); !got.Equal(want) {
			t.Errorf("tick at %v, want %v", got, want)
		}
	default:
		t.Fatal("no tick after a period")
	}
	// Three periods at once deliver one tick (the others are dropped).
	f.Advance(3 * time.Second)
	<-tk.C()
	select {
	case <-tk.C():
		t.Fatal("dropped ticks were delivered")
	default:
	}
	if got, want := f.Now(), start.Add(4*time.Second); !got.Equal(want) {
		t.Errorf("Now = %v, want %v", got, want)
	}
	tk.Stop()
	f.Advance(time.Hour)
	select {
	case <-tk.C():
		t.Fatal("a stopped ticker ticked")
	default:
	}
	if f.WaitForTickers(1, time.Millisecond) {
		t.Error("WaitForTickers counted a stopped ticker")
	}
	go f.NewTicker(time.Second)
	if !f.WaitForTickers(1, 5*time.Second) {
		t.Error("WaitForTickers missed a new ticker")
	}
}

// call is one run of a timer's func: which, and what Now showed in it.
type call struct {
	Name string
	At   time.Duration // since the start of the clock
}

func TestFakeAfterFunc(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// run drives f; fn(name) is a timer func that records its call.
		run  func(t *testing.T, f *clock.Fake, fn func(name string) func())
		want []call
	}{
		{
			name: "FiresOnceAtItsTime",
			run: func(t *testing.T, f *clock.Fake, fn func(string) func()) {
				f.AfterFunc(time.Second, fn("a"))
				f.Advance(time.Second - time.Nanosecond)
				f.Advance(time.Nanosecond)
				f.Advance(time.Hour)
			},
			want: []call{{"a", time.Second}},
		},
		{
			name: "NowIsTheTimersTimeWhenAdvancePassesIt",
			run: func(t *testing.T, f *clock.Fake, fn func(string) func()) {
				f.AfterFunc(time.Second, fn("a"))
				f.Advance(time.Hour)
			},
			want: []call{{"a", time.Second}},
		},
		{
			name: "InDueOrderThenArmingOrder",
			run: func(t *testing.T, f *clock.Fake, fn func(string) func()) {
				f.AfterFunc(2*time.Second, fn("b"))
				f.AfterFunc(time.Second, fn("a"))
				f.AfterFunc(2*time.Second, fn("c"))
				f.Advance(3 * time.Second)
			},
			want: []call{{"a", time.Second}, {"b", 2 * time.Second}, {"c", 2 * time.Second}},
		},
		{
			name: "ZeroOrNegativeFiresOnTheNextAdvance",
			run: func(t *testing.T, f *clock.Fake, fn func(string) func()) {
				f.AfterFunc(0, fn("zero"))
				f.AfterFunc(-time.Second, fn("negative"))
				f.Advance(0)
			},
			want: []call{{"zero", 0}, {"negative", 0}},
		},
		{
			name: "StopBeforeItsTime",
			run: func(t *testing.T, f *clock.Fake, fn func(string) func()) {
				timer := f.AfterFunc(time.Second, fn("a"))
				if !timer.Stop() {
					t.Error("Stop of a pending timer = false, want true")
				}
				if timer.Stop() {
					t.Error("second Stop = true, want false")
				}
				f.Advance(time.Hour)
			},
		},
		{
			name: "StopAfterItFired",
			run: func(t *testing.T, f *clock.Fake, fn func(string) func()) {
				timer := f.AfterFunc(time.Second, fn("a"))
				f.Advance(time.Second)
				if timer.Stop() {
					t.Error("Stop of a fired timer = true, want false")
				}
			},
			want: []call{{"a", time.Second}},
		},
		{
			name: "ResetPendingMovesIt",
			run: func(t *testing.T, f *clock.Fake, fn func(string) func()) {
				timer := f.AfterFunc(time.Second, fn("a"))
				f.Advance(500 * time.Millisecond)
				if !timer.Reset(time.Second) {
					t.Error("Reset of a pending timer = false, want true")
				}
				f.Advance(time.Second - time.Nanosecond) // past the old time
				f.Advance(time.Nanosecond)
			},
			want: []call{{"a", 1500 * time.Millisecond}},
		},
		{
			name: "ResetAfterItFiredArmsItAgain",
			run: func(t *testing.T, f *clock.Fake, fn func(string) func()) {
				timer := f.AfterFunc(time.Second, fn("a"))
				f.Advance(time.Second)
				if timer.Reset(time.Second) {
					t.Error("Reset of a fired timer = true, want false")
				}
				f.Advance(time.Second)
			},
			want: []call{{"a", time.Second}, {"a", 2 * time.Second}},
		},
		{
			name: "ResetAfterStopArmsItAgain",
			run: func(t *testing.T, f *clock.Fake, fn func(string) func()) {
				timer := f.AfterFunc(time.Second, fn("a"))
				timer.Stop()
				if timer.Reset(2 * time.Second) {
					t.Error("Reset of a stopped timer = true, want false")
				}
				f.Advance(time.Hour)
			},
			want: []call{{"a", 2 * time.Second}},
		},
		{
			// The funcs run without the clock's lock: they may arm
			// timers, which fire within the same Advance if due.
			name: "ArmedByAFuncWithinTheSpan",
			run: func(t *testing.T, f *clock.Fake, fn func(string) func()) {
				f.AfterFunc(time.Second, func() {
					fn("a")()
					f.AfterFunc(time.Second, fn("b"))
					f.AfterFunc(time.Hour, fn("late"))
				})
				f.Advance(3 * time.Second)
			},
			want: []call{{"a", time.Second}, {"b", 2 * time.Second}},
		},
		{
			name: "ResetFromItsOwnFunc",
			run: func(t *testing.T, f *clock.Fake, fn func(string) func()) {
				var timer clock.Timer
				runs := 0
				timer = f.AfterFunc(time.Second, func() {
					fn("a")()
					if runs++; runs < 3 {
						timer.Reset(time.Second)
					}
				})
				f.Advance(time.Hour)
			},
			want: []call{{"a", time.Second}, {"a", 2 * time.Second}, {"a", 3 * time.Second}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			f := clock.NewFake(start)
			var mu sync.Mutex
			var got []call
			fn := func(name string) func() {
				return func() {
					mu.Lock()
					defer mu.Unlock()
					got = append(got, call{name, f.Now().Sub(start)})
				}
			}
			tt.run(t, f, fn)
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFakeAfterFuncConcurrent arms and advances from several goroutines at
// once (for -race) and checks that no timer is lost or fired twice.
func TestFakeAfterFuncConcurrent(t *testing.T) {
	t.Parallel()
	const workers = 8
	f := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var fired atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			// No Reset here: another worker's Advance may fire the timer
			// first, and a Reset after that arms it again (as time.Timer's
			// does), which would count it twice.
			f.AfterFunc(time.Second, func() { fired.Add(1) })
			f.Advance(time.Second)
			_ = f.Now()
		})
	}
	wg.Wait()
	// Each timer was armed at most (workers-1)s in, for 1s.
	f.Advance(time.Second)
	if got := fired.Load(); got != workers {
		t.Errorf("%d timers fired, want %d", got, workers)
	}
}

// TestRealAfterFunc: the real clock's timers are time.AfterFunc's.
func TestRealAfterFunc(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	clock.Real().AfterFunc(time.Nanosecond, func() { close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a real timer did not fire")
	}
	timer := clock.Real().AfterFunc(time.Hour, func() { t.Error("a stopped real timer fired") })
	if !timer.Stop() {
		t.Error("Stop of a pending real timer = false, want true")
	}
	if timer.Reset(time.Hour) {
		t.Error("Reset of a stopped real timer = true, want false")
	}
	timer.Stop()
}
