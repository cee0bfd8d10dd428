package chat

import (
	"context"
	"testing"

	"github.com/google/uuid"
)

// benchDelta is a typical delta event: 16 bytes of text, as llmtest.Paced
// sends.
var benchDelta = Event{Seq: 42, Kind: EventDelta, Text: " w41xxxxxxxxxxxx"}

// BenchmarkGenerationRelay is the in-process hand-off of one delta from
// the goroutine that reads the model to a follower (the RPC relaying it):
// emit appends under the generation's lock and wakes followers; the
// follower takes the event. The mirror reads the same list on its own, so
// this measures the hand-off alone.
func BenchmarkGenerationRelay(b *testing.B) {
	gen := &generation{wake: make(chan struct{}), id: uuid.New()}
	follower := gen.subscribe(0)
	ctx := context.Background()
	done := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for range b.N {
			if _, err := follower.Next(ctx); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for range b.N {
		gen.emit(benchDelta)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
