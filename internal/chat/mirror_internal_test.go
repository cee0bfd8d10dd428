package chat

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// countingLog records the writes it is given and makes them all.
type countingLog struct {
	EventLog
	mu       sync.Mutex
	events   int
	finishes int
}

func (l *countingLog) Write(_ context.Context, writes []LogWrite) []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range writes {
		l.events += len(w.Events)
		if w.Finish {
			l.finishes++
		}
	}
	return make([]error, len(writes))
}

// waitIdle waits until the mirror goroutine has nothing left to do.
func waitIdle(t *testing.T, g *Generator) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		g.mirrorMu.Lock()
		idle := !g.mirrorRunning
		g.mirrorMu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the mirror is still running")
		}
	}
}

// TestMirrorStaleSignal: a signal still queued when the write that
// finished its generation's log has been made (the terminal event's, when
// the mirror took every event before reading it) does not finish the log
// a second time.
func TestMirrorStaleSignal(t *testing.T) {
	t.Parallel()
	log := &countingLog{}
	g := NewGenerator(nil, nil, log, nil, GeneratorConfig{})
	gen := &generation{g: g, id: uuid.New(), wake: make(chan struct{}), mirrored: make(chan struct{})}
	gen.emit(Event{Kind: EventStarted})
	gen.mu.Lock()
	gen.mirror.launched = true
	gen.mu.Unlock()
	g.signalMirror(mirrorSignal{gen: gen, urgent: true})
	gen.emit(Event{Kind: EventDelta, Text: "a"})
	gen.emit(Event{Kind: EventCompleted})
	<-gen.mirrored
	g.signalMirror(mirrorSignal{gen: gen, urgent: true})
	waitIdle(t, g)
	log.mu.Lock()
	defer log.mu.Unlock()
	if log.events != 3 || log.finishes != 1 {
		t.Errorf("wrote %d events and %d finishes, want 3 and 1", log.events, log.finishes)
	}
}
