package chat

import (
	"context"
	"testing"

	"github.com/google/uuid"
)

// benchDelta is a typical delta event: 16 bytes of text, as llmtest.Paced
// sends.
var benchDelta = Event{Seq: 42, Kind: EventDelta, Text: " w41xxxxxxxxxxxx"}

// BenchmarkEncodeEvent is the cost of mirroring one delta to the shared
// event log: every event of every answer is encoded once.
func BenchmarkEncodeEvent(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeEvent(benchDelta); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeEvent is the cost per event of following a generation
// that runs on another instance.
func BenchmarkDecodeEvent(b *testing.B) {
	data, err := encodeEvent(benchDelta)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeEvent(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunRelay is the in-process hand-off of one delta from the
// goroutine that reads the model to a follower (the RPC relaying it): emit
// appends under the run's lock and wakes followers; the follower takes the
// event. The mirror reads the same list on its own, so this measures the
// hand-off alone.
func BenchmarkRunRelay(b *testing.B) {
	r := &run{wake: make(chan struct{}), answer: Message{GenerationID: uuid.New()}}
	follower := r.subscribe(0)
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
		r.emit(benchDelta)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
