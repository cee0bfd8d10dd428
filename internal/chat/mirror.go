package chat

import (
	"context"
	"time"
)

// Beside the stream: the mirror copies a generation's events to the shared
// event log, in order, off the hot path, so that a client on another
// instance can resume or watch the answer.

// mirrorTimeout bounds one write to the shared event log.
const mirrorTimeout = 2 * time.Second

// mirrorBatch caps the events written to the shared log in one round trip.
const mirrorBatch = 64

// mirrorDelay is how long the mirror gathers events before it writes them:
// remote followers see events up to this much later, in exchange for one
// Redis round trip per answer every mirrorDelay instead of one per token.
// Local followers (the client that sent the message) are not delayed.
const mirrorDelay = 50 * time.Millisecond

// mirror writes what has gathered within mirrorDelay in one round trip;
// the first event (a remote resume may be waiting for the log to exist)
// and the last one go out at once. It returns after the log is finished.
func (gen *generation) mirror() {
	defer gen.mirrored.Done()
	base := context.WithoutCancel(gen.ctx)
	sent, healthy := 0, true
	for healthy {
		evs, done, wake := gen.pending(sent)
		if len(evs) == 0 {
			if done {
				break
			}
			<-wake
			continue
		}
		if evs[0].Seq > 1 && !evs[len(evs)-1].Terminal() && len(evs) < mirrorBatch {
			evs = gen.gather(sent, wake)
		}
		evs = evs[:min(len(evs), mirrorBatch)]
		ctx, cancel := context.WithTimeout(base, mirrorTimeout)
		err := gen.g.events.Append(ctx, gen.id, evs...)
		cancel()
		if err != nil {
			// Local followers are unaffected. The log stops here; remote
			// followers reach its end without a terminal event and read
			// the saved answer instead (remoteStream).
			gen.g.log.Warn("event log append failed; remote followers will read the saved answer", "generation_id", gen.id, "err", err)
			healthy = false
		}
		sent += len(evs)
	}
	if !healthy {
		// Let the generation finish before the log is marked finished.
		for {
			_, done, wake := gen.pending(sent)
			if done {
				break
			}
			<-wake
		}
	}
	ctx, cancel := context.WithTimeout(base, mirrorTimeout)
	defer cancel()
	if err := gen.g.events.Finish(ctx, gen.id); err != nil {
		gen.g.log.Warn("event log finish failed", "generation_id", gen.id, "err", err)
	}
}

// gather waits up to mirrorDelay for more events, or until a batch is full
// or the generation ended, and returns the events after sent.
func (gen *generation) gather(sent int, wake <-chan struct{}) []Event {
	deadline := time.NewTimer(mirrorDelay)
	defer deadline.Stop()
	for {
		select {
		case <-deadline.C:
			evs, _, _ := gen.pending(sent)
			return evs
		case <-wake:
			var evs []Event
			var done bool
			evs, done, wake = gen.pending(sent)
			if done || len(evs) >= mirrorBatch {
				return evs
			}
		}
	}
}
