package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
)

// eventJSONCases are strings whose JSON encoding has a rule of its own.
var eventJSONCases = []string{
	"", " w41xxxxxxxxxxxx", `say "hi" \ there`, "line\nbreak\r\ttab\b\f", "\x00\x01\x1f\x7f",
	"<script>&amp;</script>", "héllo wörld ✓ 🎉", "\u2028\u2029", "bad \xff\xfe utf8 \xc3", "\xed\xa0\x80 surrogate",
	"ends in a partial rune \xe2\x82",
}

// checkEncodesAsJSON fails the test, naming the event what, unless
// encodeEvent writes ev exactly as encoding/json does.
func checkEncodesAsJSON(t *testing.T, what string, ev chat.Event) {
	t.Helper()
	want, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := encodeEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

// TestAppendEventMatchesJSON: a text delta is written byte for byte as
// encoding/json writes it, other events go through encoding/json, and
// every one decodes back to itself.
func TestAppendEventMatchesJSON(t *testing.T) {
	var events []chat.Event
	for i, s := range eventJSONCases {
		events = append(events, chat.Event{Seq: int64(i + 1), Kind: chat.EventDelta, Text: s})
	}
	events = append(events,
		chat.Event{Seq: 1 << 40, Kind: chat.EventDelta, Text: "big seq"},
		chat.Event{Seq: 3, Kind: chat.EventDelta, Text: "artifact piece", Tool: &chat.ToolEvent{CallID: "c1"}},
		chat.Event{Seq: 1, Kind: chat.EventStarted, Started: &chat.Started{GenerationID: uuid.New(), Model: "m"}},
		chat.Event{Seq: 9, Kind: chat.EventCompleted, Message: &chat.Message{ID: uuid.New(), Content: "<b>done</b>"}},
	)
	for _, ev := range events {
		checkEncodesAsJSON(t, fmt.Sprintf("event %+v", ev), ev)
	}
}

// FuzzAppendEvent: for any text and seq, the hand-written encoding of a
// delta is encoding/json's, byte for byte.
func FuzzAppendEvent(f *testing.F) {
	for i, s := range eventJSONCases {
		f.Add(int64(i), s)
	}
	f.Add(int64(-1)<<63, "min seq")
	f.Fuzz(func(t *testing.T, seq int64, text string) {
		ev := chat.Event{Seq: seq, Kind: chat.EventDelta, Text: text}
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendEvent([]byte("prefix"), ev)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[len("prefix"):], want) || string(got[:len("prefix")]) != "prefix" {
			t.Fatalf("seq %d text %q:\n got %s\nwant %s", seq, text, got, want)
		}
	})
}

// TestAppendEventEveryField: a delta with any other field of chat.Event
// set is still encoded as encoding/json encodes it, so a field added to
// chat.Event cannot be dropped from the log by the hand-written path.
func TestAppendEventEveryField(t *testing.T) {
	typ := reflect.TypeFor[chat.Event]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Name == "Seq" || f.Name == "Kind" || f.Name == "Text" {
			continue
		}
		ev := chat.Event{Seq: -3, Kind: chat.EventDelta, Text: "t"}
		v := reflect.ValueOf(&ev).Elem().Field(i)
		switch v.Kind() {
		case reflect.Pointer:
			v.Set(reflect.New(f.Type.Elem()))
		case reflect.String:
			v.SetString("x")
		default:
			t.Fatalf("field %s of kind %s: teach this test to set it", f.Name, v.Kind())
		}
		checkEncodesAsJSON(t, "a delta with "+f.Name+" set", ev)
	}
}

// recordingBroker keeps what ChatLog.Write hands it.
type recordingBroker struct {
	Broker
	writes []Write
}

func (r *recordingBroker) Write(_ context.Context, writes []Write) []error {
	r.writes = writes
	return make([]error, len(writes))
}

// TestChatLogWriteSharedBuffer: the events of one batch, encoded into one
// buffer (grown past its first size by a large event), each come out as
// their own encoding, none reaching into the next.
func TestChatLogWriteSharedBuffer(t *testing.T) {
	gens := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	big := strings.Repeat("<long answer> ", 500)
	writes := []chat.LogWrite{
		{GenerationID: gens[0], Events: []chat.Event{
			{Seq: 1, Kind: chat.EventStarted, Started: &chat.Started{GenerationID: gens[0], Model: "m"}},
			{Seq: 2, Kind: chat.EventDelta, Text: "hello"},
		}},
		{GenerationID: gens[1], Finish: true},
		{GenerationID: gens[2], Events: []chat.Event{
			{Seq: 7, Kind: chat.EventDelta, Text: "a\"b"},
			{Seq: 8, Kind: chat.EventCompleted, Message: &chat.Message{Content: big}},
			{Seq: 9, Kind: chat.EventDelta, Text: "after"},
		}, Finish: true},
	}
	rec := &recordingBroker{}
	for i, err := range NewChatLog(rec).Write(context.Background(), writes) {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if len(rec.writes) != len(writes) {
		t.Fatalf("%d writes reached the broker, want %d", len(rec.writes), len(writes))
	}
	for i, w := range writes {
		got := rec.writes[i]
		if got.GenerationID != w.GenerationID || got.Finish != w.Finish || len(got.Events) != len(w.Events) {
			t.Fatalf("write %d: %+v, want %d events of %s, finish %v", i, got, len(w.Events), w.GenerationID, w.Finish)
		}
		for j, ev := range w.Events {
			want, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			be := got.Events[j]
			if be.Seq != ev.Seq || !bytes.Equal(be.Data, want) {
				t.Errorf("write %d event %d: seq %d %s, want seq %d %s", i, j, be.Seq, be.Data, ev.Seq, want)
			}
			if cap(be.Data) != len(be.Data) {
				t.Errorf("write %d event %d: capacity %d past its %d bytes: an append would write into the next event", i, j, cap(be.Data), len(be.Data))
			}
		}
		if cap(got.Events) != len(got.Events) {
			t.Errorf("write %d: its events' capacity %d reaches into the next write's", i, cap(got.Events))
		}
	}
}
