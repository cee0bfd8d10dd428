package broker

import (
	"testing"

	"github.com/parleyhq/parley/internal/chat"
)

// benchDelta is a typical delta event: 16 bytes of text, as llmtest.Paced
// sends.
var benchDelta = chat.Event{Seq: 42, Kind: chat.EventDelta, Text: " w41xxxxxxxxxxxx"}

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
