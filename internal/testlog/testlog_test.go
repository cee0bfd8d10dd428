package testlog_test

import (
	"slices"
	"testing"

	"github.com/parleyhq/parley/internal/leaktest"
	"github.com/parleyhq/parley/internal/testlog"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// TestBuffer: writes past Max are dropped but reported written; Lines and
// Tail read what was kept.
func TestBuffer(t *testing.T) {
	b := &testlog.Buffer{Max: 10}
	for _, w := range []string{"one\n", " two \n\n", "three\n"} {
		if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
	}
	if got := b.String(); got != "one\n two \n" {
		t.Errorf("kept %q, want the first 10 bytes", got)
	}
	if got := b.Lines(); !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("Lines() = %q", got)
	}
	if got := b.Tail(3); got != "...o \n" {
		t.Errorf("Tail(3) = %q", got)
	}
}
