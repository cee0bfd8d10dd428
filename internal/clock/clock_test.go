package clock_test

import (
	"testing"
	"time"

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
