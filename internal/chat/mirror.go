package chat

import (
	"context"
	"time"
)

// Beside the stream: the mirror copies the events of every generation
// running on this instance to the shared event log, in order, off the hot
// path, so that a client on another instance can resume or watch an
// answer. One goroutine per Generator does it for all of them, and only
// while there is something to write: each flush writes what every due
// generation has gathered in one round trip (EventLog.Write). Answers
// whose events fall due within mirrorEarly of each other share a write, so
// an instance with N answers streaming makes a few writes per mirrorDelay
// (plus one at once for each answer's first and terminal events), not one
// per answer per event, and an answer costs no goroutine of its own here.
// While a write is in flight the others wait behind it.

// mirrorTimeout bounds one write to the shared event log (the context
// deadline of EventLog.Write; the Redis event log's client applies it to
// its sockets). A stalled Redis holds the flushes behind it this long at
// most, after which the answers in that write stop being mirrored and
// their remote followers read the saved answer instead.
const mirrorTimeout = 2 * time.Second

// mirrorBatch caps the events of one generation written in one flush.
const mirrorBatch = 64

// mirrorFlushEvents caps the events of all generations in one flush, so a
// burst of answers is written in bounded pipelines.
const mirrorFlushEvents = 2048

// mirrorDelay is how long an answer's events gather before they are
// written: remote followers see events up to this much later, in exchange
// for one Redis round trip per flush instead of one per token. Local
// followers (the client that sent the message) are not delayed. An
// answer's first event (a remote resume may be waiting for the log to
// exist), its terminal event and a full batch go out at once.
const mirrorDelay = 50 * time.Millisecond

// mirrorEarly lets a generation whose events are due within it ride along
// with a flush made for another, so answers that started at different
// moments share round trips.
const mirrorEarly = mirrorDelay / 4

// mirrorState is a generation's place in the mirror. taken is guarded by
// the generation's mu (emit reads it); the rest belongs to the mirror
// goroutine.
type mirrorState struct {
	launched bool // the mirror has been told of the generation
	taken    int  // events handed to the mirror (written, or dropped after a failure)

	scheduled bool      // in the mirror's due list
	due       time.Time // when its gathered events must be written
	failed    bool      // a write failed: the log stops, and is only finished
	finished  bool      // the finish was written: signals still queued are stale
}

// mirrorSignal tells the mirror that a generation has events to write:
// urgent ones now, others mirrorDelay after at.
type mirrorSignal struct {
	gen    *generation
	urgent bool
	at     time.Time
}

// signalMirror queues a signal and starts the mirror goroutine if it is
// not running. The mirror never holds g.mirrorMu while it takes a
// generation's mu.
func (g *Generator) signalMirror(s mirrorSignal) {
	g.mirrorMu.Lock()
	defer g.mirrorMu.Unlock()
	g.mirrorQueue = append(g.mirrorQueue, s)
	if !g.mirrorRunning {
		g.mirrorRunning = true
		go g.mirror()
		return
	}
	select {
	case g.mirrorWake <- struct{}{}:
	default:
	}
}

// mirror runs until no generation has anything left to write; the next
// signal starts it again.
func (g *Generator) mirror() {
	var (
		due    []*generation // the generations with events to write
		queue  []mirrorSignal
		timer  *time.Timer
		writes []LogWrite
		gens   []*generation
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		g.mirrorMu.Lock()
		queue, g.mirrorQueue = g.mirrorQueue, queue[:0]
		if len(queue) == 0 && len(due) == 0 {
			g.mirrorRunning = false
			g.mirrorMu.Unlock()
			return
		}
		g.mirrorMu.Unlock()
		for _, s := range queue {
			m := &s.gen.mirror
			if m.finished {
				// Signalled before its last write took everything.
				continue
			}
			at := s.at.Add(mirrorDelay)
			if s.urgent {
				at = time.Time{}
			}
			if !m.scheduled {
				m.scheduled, m.due = true, at
				due = append(due, s.gen)
			} else if at.Before(m.due) {
				m.due = at
			}
		}
		clear(queue)

		now := time.Now()
		next := time.Time{}
		ready := false
		for _, gen := range due {
			if !gen.mirror.due.After(now) {
				ready = true
				break
			}
			if next.IsZero() || gen.mirror.due.Before(next) {
				next = gen.mirror.due
			}
		}
		if !ready {
			if timer == nil {
				timer = time.NewTimer(next.Sub(now))
			} else {
				timer.Reset(next.Sub(now))
			}
			select {
			case <-timer.C:
			case <-g.mirrorWake:
				timer.Stop()
			}
			continue
		}

		// Flush every generation due now or soon, within the bounds.
		writes, gens = writes[:0], gens[:0]
		kept := due[:0]
		events := 0
		for _, gen := range due {
			m := &gen.mirror
			if m.due.After(now.Add(mirrorEarly)) || events >= mirrorFlushEvents {
				kept = append(kept, gen)
				continue
			}
			w, more := gen.takeForMirror(min(mirrorBatch, mirrorFlushEvents-events))
			events += len(w.Events)
			if more {
				// Left over by a bound: due again at once.
				m.due = time.Time{}
				kept = append(kept, gen)
			} else {
				m.scheduled = false
			}
			if len(w.Events) > 0 || w.Finish {
				writes = append(writes, w)
				gens = append(gens, gen)
			}
		}
		clear(due[len(kept):])
		due = kept
		if len(writes) > 0 {
			g.writeMirror(writes, gens)
		}
		clear(writes)
		clear(gens)
	}
}

// takeForMirror hands the mirror up to max of the generation's events
// that it has not taken yet, with Finish when they are its last; more
// reports events left over. After a failed write the events are dropped
// and the log is only finished once the generation has ended.
func (gen *generation) takeForMirror(max int) (w LogWrite, more bool) {
	gen.mu.Lock()
	defer gen.mu.Unlock()
	w.GenerationID = gen.id
	m := &gen.mirror
	if m.failed {
		m.taken = len(gen.events)
		w.Finish = gen.done
		return w, false
	}
	end := min(len(gen.events), m.taken+max)
	w.Events = gen.events[m.taken:end:end]
	m.taken = end
	more = end < len(gen.events)
	w.Finish = gen.done && !more
	return w, more
}

// writeMirror makes one flush's writes and settles each generation's part.
func (g *Generator) writeMirror(writes []LogWrite, gens []*generation) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(g.base), mirrorTimeout)
	errs := g.events.Write(ctx, writes)
	cancel()
	for i, gen := range gens {
		var err error
		if i < len(errs) {
			err = errs[i]
		}
		m := &gen.mirror
		switch {
		case err != nil && writes[i].Finish:
			g.log.Warn("event log finish failed", "generation_id", gen.id, "err", err)
		case err != nil && !m.failed:
			// Local followers are unaffected. The log stops here; remote
			// followers reach its end without a terminal event and read
			// the saved answer instead (remoteStream).
			g.log.Warn("event log append failed; remote followers will read the saved answer", "generation_id", gen.id, "err", err)
			m.failed = true
		}
		if writes[i].Finish {
			m.finished = true
			close(gen.mirrored)
		}
	}
}
