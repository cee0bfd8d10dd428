package chat_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/chat/chattest"
	"github.com/parleyhq/parley/internal/clock"
	"github.com/parleyhq/parley/internal/plan"
)

// These tests hold the rules of an answer's life with in-memory stand-ins
// (no database, no Redis): each runs in milliseconds. The same rules are
// tested over the real stack in internal/rpc.

// wait bounds every wait of these tests; none is expected to come close.
const wait = 5 * time.Second

var t0 = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

type rig struct {
	store  *chattest.Store
	model  *chattest.Model
	events chat.EventLog
	clock  *clock.Fake
	gen    *chat.Generator
	user   uuid.UUID
	conv   uuid.UUID
}

// newRig returns a generator on fresh stand-ins, with one conversation of
// one user, shut down when the test ends.
func newRig(t *testing.T, cfg chat.GeneratorConfig) *rig {
	t.Helper()
	r := &rig{store: chattest.NewStore(), model: chattest.NewModel(), events: chattest.NewEventLog(time.Minute), clock: clock.NewFake(t0), user: uuid.New()}
	r.conv = r.store.AddConversation(r.user, chat.NewConversation{Title: "test"})
	r.gen = r.instance(t, cfg, r.events)
	return r
}

// instance returns another generator on the rig's store, model and clock:
// another instance of the deployment when events is the rig's log.
func (r *rig) instance(t *testing.T, cfg chat.GeneratorConfig, events chat.EventLog) *chat.Generator {
	t.Helper()
	if cfg.Clock == nil {
		cfg.Clock = r.clock
	}
	g := chat.NewGenerator(r.store, chat.NewModels().Add(r.model, "m"), events, nil, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	if err := g.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), wait)
		defer scancel()
		if err := g.Shutdown(sctx, 0); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return g
}

func (r *rig) send(t *testing.T, content string) (chat.Stream, *chattest.Turn) {
	t.Helper()
	s, err := r.gen.Send(t.Context(), r.user, chat.SendInput{ConversationID: r.conv, Content: content})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	turn := r.model.Next(wait)
	if turn == nil {
		t.Fatal("the model was not asked")
	}
	return s, turn
}

// next returns the stream's next event.
func next(t *testing.T, s chat.Stream) chat.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	ev, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return ev
}

// rest returns the stream's events up to its end.
func rest(t *testing.T, s chat.Stream) []chat.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	var evs []chat.Event
	for {
		ev, err := s.Next(ctx)
		if errors.Is(err, io.EOF) {
			return evs
		}
		if err != nil {
			t.Fatalf("Next after %d events: %v", len(evs), err)
		}
		evs = append(evs, ev)
	}
}

func kinds(evs []chat.Event) string {
	var out []string
	for _, ev := range evs {
		out = append(out, string(ev.Kind))
	}
	return strings.Join(out, ",")
}

func last(evs []chat.Event) chat.Event { return evs[len(evs)-1] }

// TestAnswerCompletes: the exchange is saved before the model's first
// byte, events come in order with seq 1, 2, 3…, and the end is saved with
// the provider's usage and finish reason.
func TestAnswerCompletes(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{})
	s, turn := r.send(t, "hello")
	started := next(t, s)
	if started.Kind != chat.EventStarted || started.Seq != 1 {
		t.Fatalf("first event = %+v, want started with seq 1", started)
	}
	answerID := started.Started.AssistantMessageID
	saved, ok := r.store.Message(answerID)
	if !ok || saved.Status != chat.StatusStreaming || saved.GenerationID != started.Started.GenerationID {
		t.Fatalf("before the first delta the answer is %+v, want it saved streaming", saved)
	}
	turn.Say("Hi", " there")
	turn.End(chat.Usage{PromptTokens: 7, CompletionTokens: 2}, "stop")
	evs := append([]chat.Event{started}, rest(t, s)...)
	if got, want := kinds(evs), "started,delta,delta,usage,completed"; got != want {
		t.Fatalf("events = %s, want %s", got, want)
	}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			t.Errorf("event %d has seq %d", i, ev.Seq)
		}
	}
	m := *last(evs).Message
	want := chat.Message{Content: "Hi there", Status: chat.StatusCompleted, Model: "m", Usage: chat.Usage{PromptTokens: 7, CompletionTokens: 2}, FinishReason: "stop"}
	got := chat.Message{Content: m.Content, Status: m.Status, Model: m.Model, Usage: m.Usage, FinishReason: m.FinishReason}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("completed message (-want +got):\n%s", diff)
	}
	if u := r.store.Usage(r.user); u.Active != 0 || u.Reserved != 0 || u.Used != 9 {
		t.Errorf("usage after the answer = %+v, want the slot free and 9 tokens settled", u)
	}
}

// TestCheckpointCadence: the running answers' text is saved once per
// interval, in one write for all of them, and only the answers whose text
// changed since are written; the others are only asked after.
func TestCheckpointCadence(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{CheckpointInterval: time.Second})
	other := r.store.AddConversation(r.user, chat.NewConversation{Title: "other"})
	s1, turn1 := r.send(t, "one")
	s2, err := r.gen.Send(t.Context(), r.user, chat.SendInput{ConversationID: other, Content: "two"})
	if err != nil {
		t.Fatal(err)
	}
	turn2 := r.model.Next(wait)
	turn1.Say("a")
	turn2.Say("b")
	next(t, s1) // started
	next(t, s1) // "a"
	next(t, s2)
	next(t, s2)

	r.clock.Advance(999 * time.Millisecond)
	r.clock.Advance(time.Millisecond)
	if !r.store.WaitFor(wait, func(st *chattest.Store) bool { return len(st.Checkpoints()) == 1 }) {
		t.Fatalf("checkpoints after one interval = %d, want 1", len(r.store.Checkpoints()))
	}
	if batch := r.store.Checkpoints()[0]; len(batch) != 2 {
		t.Errorf("the checkpoint saved %d answers, want both in one write", len(batch))
	}
	// Only the first answer grows before the next tick.
	turn1.Say("c")
	next(t, s1)
	r.clock.Advance(time.Second)
	if !r.store.WaitFor(wait, func(st *chattest.Store) bool { return len(st.Checkpoints()) == 2 }) {
		t.Fatalf("checkpoints = %d, want 2", len(r.store.Checkpoints()))
	}
	var written, asked []chat.Checkpoint
	for _, cp := range r.store.Checkpoints()[1] {
		if cp.Unchanged {
			asked = append(asked, cp)
		} else {
			written = append(written, cp)
		}
	}
	if len(written) != 1 || written[0].Content != "ac" || len(asked) != 1 || asked[0].Content != "" {
		t.Errorf("second checkpoint writes %+v and asks after %+v, want the changed answer written with %q and the other only asked after", written, asked, "ac")
	}
}

// TestEndedElsewhereWhileSilent: an answer whose model has said nothing
// since the last checkpoint (a slow model, a tool running) still learns at
// the next one that it was stopped through the database elsewhere.
func TestEndedElsewhereWhileSilent(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{CheckpointInterval: time.Second})
	s, turn := r.send(t, "hello")
	turn.Say("partial")
	next(t, s)
	next(t, s)
	r.clock.Advance(time.Second) // "partial" is saved
	if !r.store.WaitFor(wait, func(st *chattest.Store) bool { return len(st.Checkpoints()) == 1 }) {
		t.Fatal("no first checkpoint")
	}
	r.store.Delete(r.conv)
	r.clock.Advance(time.Second) // nothing new to write: only asked after
	select {
	case <-turn.Closed():
	case <-time.After(wait):
		t.Fatal("the silent answer's model request was not closed")
	}
	rest(t, s)
}

// TestEndedElsewhere: an answer the database no longer streams (stopped
// through the database by another instance, or deleted) is canceled at
// its next checkpoint and its model request closed.
func TestEndedElsewhere(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{CheckpointInterval: time.Second})
	s, turn := r.send(t, "hello")
	turn.Say("partial")
	next(t, s)
	next(t, s)
	r.store.Delete(r.conv)
	r.clock.Advance(time.Second)
	select {
	case <-turn.Closed():
	case <-time.After(wait):
		t.Fatal("the model request was not closed")
	}
	rest(t, s)
}

// TestEndings: how an answer ends decides its saved status and what its
// followers are told; the partial text is always kept.
func TestEndings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cfg        chat.GeneratorConfig
		end        func(*rig, *chattest.Turn, chat.Event)
		wantStatus chat.Status
		wantCode   apperr.Code // "" for completed
	}{
		{
			name: "Stopped",
			end: func(r *rig, _ *chattest.Turn, st chat.Event) {
				if _, err := r.gen.Stop(context.Background(), r.user, st.Started.GenerationID); err != nil {
					panic(err)
				}
			},
			wantStatus: chat.StatusStopped,
		},
		{
			name: "ProviderFailed",
			end: func(_ *rig, turn *chattest.Turn, _ chat.Event) {
				turn.Fail(apperr.New(apperr.Unavailable, "upstream down"))
			},
			wantStatus: chat.StatusFailed, wantCode: apperr.Unavailable,
		},
		{
			name:       "ProviderInternal",
			end:        func(_ *rig, turn *chattest.Turn, _ chat.Event) { turn.Fail(errors.New("bad key")) },
			wantStatus: chat.StatusFailed, wantCode: apperr.Internal,
		},
		{
			name:       "TooLong",
			cfg:        chat.GeneratorConfig{MaxDuration: 50 * time.Millisecond},
			end:        func(*rig, *chattest.Turn, chat.Event) {},
			wantStatus: chat.StatusFailed, wantCode: apperr.DeadlineExceeded,
		},
		{
			name: "Shutdown",
			end: func(r *rig, _ *chattest.Turn, _ chat.Event) {
				go r.gen.Shutdown(context.Background(), 0)
			},
			wantStatus: chat.StatusInterrupted, wantCode: apperr.Unavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, tt.cfg)
			s, turn := r.send(t, "hello")
			st := next(t, s)
			turn.Say("part")
			next(t, s)
			tt.end(r, turn, st)
			end := last(rest(t, s))
			var m chat.Message
			switch tt.wantCode {
			case "":
				if end.Kind != chat.EventCompleted {
					t.Fatalf("last event = %+v, want completed", end)
				}
				m = *end.Message
			default:
				if end.Kind != chat.EventFailed || end.Error.Code != tt.wantCode {
					t.Fatalf("last event = %+v %+v, want failed with %s", end, end.Error, tt.wantCode)
				}
				m, _ = r.store.Message(st.Started.AssistantMessageID)
			}
			if m.Status != tt.wantStatus || m.Content != "part" {
				t.Errorf("saved %q (%s), want %q (%s)", m.Content, m.Status, "part", tt.wantStatus)
			}
			if u := r.store.Usage(r.user); u.Active != 0 || u.Reserved != 0 {
				t.Errorf("after the answer ended the account holds %+v, want nothing", u)
			}
		})
	}
}

// TestRefusals: limits refuse an exchange with the code and retry hint a
// client can act on, and leave nothing saved.
func TestRefusals(t *testing.T) {
	t.Parallel()
	t.Run("ErrQuota", func(t *testing.T) {
		t.Parallel()
		plans := plan.Catalog{Free: plan.Plan{Name: plan.Free, RateMultiplier: 1, MonthlyTokens: 1000}}
		r := newRig(t, chat.GeneratorConfig{Plans: plans})
		r.store.SetUsed(r.user, 900)
		_, err := r.gen.Send(t.Context(), r.user, chat.SendInput{ConversationID: r.conv, Content: "hello"})
		var ae *apperr.Error
		if !errors.As(err, &ae) || ae.Code != apperr.ResourceExhausted {
			t.Fatalf("err = %v, want resource_exhausted", err)
		}
		// The quota resets on the first of next month, by the generator's clock.
		if want := int(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC).Sub(t0).Seconds()) + 1; ae.RetryAfter != want {
			t.Errorf("RetryAfter = %d, want %d", ae.RetryAfter, want)
		}
	})
	t.Run("ErrBusy", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, chat.GeneratorConfig{})
		r.send(t, "first")
		_, err := r.gen.Send(t.Context(), r.user, chat.SendInput{ConversationID: r.conv, Content: "second"})
		if apperr.CodeOf(err) != apperr.FailedPrecondition {
			t.Errorf("err = %v, want failed_precondition", err)
		}
	})
	t.Run("ErrTooMany", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, chat.GeneratorConfig{MaxConcurrent: 1})
		r.send(t, "first")
		other := r.store.AddConversation(r.user, chat.NewConversation{})
		_, err := r.gen.Send(t.Context(), r.user, chat.SendInput{ConversationID: other, Content: "second"})
		var ae *apperr.Error
		if !errors.As(err, &ae) || ae.Code != apperr.ResourceExhausted || ae.RetryAfter != 1 {
			t.Errorf("err = %v, want resource_exhausted retrying after 1s", err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, chat.GeneratorConfig{})
		_, err := r.gen.Send(t.Context(), uuid.New(), chat.SendInput{ConversationID: r.conv, Content: "hi"})
		if apperr.CodeOf(err) != apperr.NotFound {
			t.Errorf("another user's conversation: err = %v, want not_found", err)
		}
	})
	t.Run("ErrDraining", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, chat.GeneratorConfig{})
		if err := r.gen.Shutdown(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
		_, err := r.gen.Send(t.Context(), r.user, chat.SendInput{ConversationID: r.conv, Content: "hi"})
		if apperr.CodeOf(err) != apperr.Unavailable {
			t.Errorf("send during shutdown: err = %v, want unavailable", err)
		}
		if u := r.store.Usage(r.user); u.Active != 0 {
			t.Errorf("a refused send holds a slot: %+v", u)
		}
	})
}

// TestRetriedSendAttaches: a send retried with the same client message id
// follows the first attempt's answer instead of starting another.
func TestRetriedSendAttaches(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{})
	in := chat.SendInput{ConversationID: r.conv, Content: "hello", ClientMessageID: "c-1"}
	first, err := r.gen.Send(t.Context(), r.user, in)
	if err != nil {
		t.Fatal(err)
	}
	turn := r.model.Next(wait)
	retry, err := r.gen.Send(t.Context(), r.user, in)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	turn.Say("once")
	turn.End(chat.Usage{}, "stop")
	a, b := rest(t, first), rest(t, retry)
	if kinds(a) != kinds(b) || last(a).Message.ID != last(b).Message.ID {
		t.Errorf("first saw %s, retry saw %s: want the same answer", kinds(a), kinds(b))
	}
	if n := len(r.model.Requests()); n != 1 {
		t.Errorf("the model was asked %d times, want once", n)
	}
}

// TestFollow: a follower resumes after the seq it saw, from the instance
// that runs the answer, from another instance through the shared log, and
// from the database once the log is gone.
func TestFollow(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{})
	s, turn := r.send(t, "hello")
	st := next(t, s)
	genID := st.Started.GenerationID
	turn.Say("a", "b")
	next(t, s)
	next(t, s)

	local, err := r.gen.Resume(t.Context(), r.user, genID, 2)
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, local); ev.Seq != 3 || ev.Text != "b" {
		t.Errorf("local resume after 2 got %+v, want seq 3 %q", ev, "b")
	}
	other := r.instance(t, chat.GeneratorConfig{}, r.events)
	remote, err := other.Resume(t.Context(), r.user, genID, 1)
	if err != nil {
		t.Fatal(err)
	}
	turn.End(chat.Usage{}, "stop")
	evs := rest(t, remote)
	if got, want := kinds(evs), "delta,delta,usage,completed"; got != want || evs[0].Seq != 2 {
		t.Errorf("remote resume after 1 = %s from seq %d, want %s from 2", got, evs[0].Seq, want)
	}
	rest(t, s)

	// An instance whose log has no entry for the answer (it expired)
	// rebuilds the finished answer from the database.
	expired := r.instance(t, chat.GeneratorConfig{}, chattest.NewEventLog(time.Minute))
	replayed, err := expired.Resume(t.Context(), r.user, genID, 0)
	if err != nil {
		t.Fatal(err)
	}
	evs = rest(t, replayed)
	if got, want := kinds(evs), "started,delta,usage,completed"; got != want || evs[1].Text != "ab" {
		t.Errorf("replay from the database = %s (%q), want %s with the whole text", got, evs[1].Text, want)
	}
	if _, err := r.gen.Resume(t.Context(), uuid.New(), genID, 0); apperr.CodeOf(err) != apperr.NotFound {
		t.Errorf("another user's resume: err = %v, want not_found", err)
	}
}

// TestStopFromAnotherInstance: a stop asked on an instance that does not
// run the answer reaches the one that does, which saves it stopped.
func TestStopFromAnotherInstance(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{})
	s, turn := r.send(t, "hello")
	st := next(t, s)
	turn.Say("part")
	next(t, s)
	other := r.instance(t, chat.GeneratorConfig{}, r.events)
	m, err := other.Stop(t.Context(), r.user, st.Started.GenerationID)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != chat.StatusStopped || m.Content != "part" {
		t.Errorf("stop returned %q (%s), want %q stopped", m.Content, m.Status, "part")
	}
}

// TestSweep: every SweepInterval, answers older than the longest
// generation (plus a minute) are marked interrupted.
func TestSweep(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{MaxDuration: 5 * time.Minute, SweepInterval: time.Minute})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.gen.SweepStale(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if !r.store.WaitFor(wait, func(st *chattest.Store) bool { return len(st.Interrupts()) == 1 }) {
		t.Fatal("no sweep at start")
	}
	if !r.clock.WaitForTickers(1, wait) {
		t.Fatal("the sweep made no ticker")
	}
	r.clock.Advance(time.Minute)
	if !r.store.WaitFor(wait, func(st *chattest.Store) bool { return len(st.Interrupts()) == 2 }) {
		t.Fatal("no sweep after an interval")
	}
	if got, want := r.store.Interrupts()[1], t0.Add(time.Minute).Add(-6*time.Minute); !got.Equal(want) {
		t.Errorf("sweep cutoff = %v, want %v", got, want)
	}
}

// TestPrompts: Send answers the branch plus the new message, Regenerate
// the branch up to the answer's question, and an edit of the first
// message starts over.
func TestPrompts(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{})
	s, turn := r.send(t, "first question")
	turn.Say("first answer")
	turn.End(chat.Usage{}, "stop")
	evs := rest(t, s)
	answer := last(evs).Message
	question := evs[0].Started.UserMessage

	prompt := func(turn *chattest.Turn) string {
		var parts []string
		for _, m := range turn.Request.Messages {
			parts = append(parts, string(m.Role)+":"+m.Content)
		}
		return strings.Join(parts, "|")
	}
	s, turn = r.send(t, "second")
	if got, want := prompt(turn), "user:first question|assistant:first answer|user:second"; got != want {
		t.Errorf("send prompt = %s, want %s", got, want)
	}
	turn.End(chat.Usage{}, "stop")
	rest(t, s)

	s, err := r.gen.Regenerate(t.Context(), r.user, chat.RegenerateInput{MessageID: answer.ID})
	if err != nil {
		t.Fatal(err)
	}
	turn = r.model.Next(wait)
	if got, want := prompt(turn), "user:first question"; got != want {
		t.Errorf("regenerate prompt = %s, want %s", got, want)
	}
	turn.End(chat.Usage{}, "stop")
	rest(t, s)

	s, err = r.gen.Edit(t.Context(), r.user, chat.EditInput{MessageID: question.ID, Content: "edited"})
	if err != nil {
		t.Fatal(err)
	}
	turn = r.model.Next(wait)
	if got, want := prompt(turn), "user:edited"; got != want {
		t.Errorf("edit prompt = %s, want %s", got, want)
	}
	turn.End(chat.Usage{}, "stop")
	rest(t, s)
}

// TestTitle: the first exchange of an untitled conversation gets a title,
// streamed before the answer completes.
func TestTitle(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{Titler: chat.HeuristicTitler{}})
	untitled := r.store.AddConversation(r.user, chat.NewConversation{})
	s, err := r.gen.Send(t.Context(), r.user, chat.SendInput{ConversationID: untitled, Content: "plan a weekend in lisbon please now"})
	if err != nil {
		t.Fatal(err)
	}
	turn := r.model.Next(wait)
	turn.End(chat.Usage{}, "stop")
	evs := rest(t, s)
	if got, want := kinds(evs), "started,title,usage,completed"; got != want && kinds(evs) != "started,usage,title,completed" {
		t.Fatalf("events = %s, want a title before completed", got)
	}
	if c, _ := r.store.Conversation(untitled); c.Title != "Plan a weekend in lisbon please" {
		t.Errorf("saved title = %q", c.Title)
	}
}

// TestFinalSaveRetried: a final save that fails is tried again with
// backoff, so a database blip loses neither the text since the last
// checkpoint nor the real usage; when the process must exit meanwhile, one
// last attempt saves the answer as interrupted with all its text.
func TestFinalSaveRetried(t *testing.T) {
	t.Parallel()
	blip := apperr.New(apperr.Unavailable, "database unreachable")
	for _, failures := range []int{1, 2} {
		t.Run(fmt.Sprintf("Fails%d", failures), func(t *testing.T) {
			t.Parallel()
			r := newRig(t, chat.GeneratorConfig{SaveRetry: time.Millisecond})
			for range failures {
				r.store.FailFinish(blip)
			}
			s, turn := r.send(t, "hello")
			turn.Say("all ", "of it")
			turn.End(chat.Usage{PromptTokens: 3, CompletionTokens: 4}, "stop")
			end := last(rest(t, s))
			if end.Kind != chat.EventCompleted || end.Message.Content != "all of it" || end.Message.Usage.CompletionTokens != 4 {
				t.Fatalf("last event = %+v, want the completed answer with the provider's usage", end)
			}
			if n := r.store.FinishCalls(); n != failures+1 {
				t.Errorf("%d save attempts, want %d", n, failures+1)
			}
		})
	}
	t.Run("ShutdownDuringRetry", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, chat.GeneratorConfig{SaveRetry: time.Minute, MaxDuration: time.Hour})
		r.store.FailFinish(blip)
		s, turn := r.send(t, "hello")
		st := next(t, s)
		turn.Say("all ", "of it")
		turn.End(chat.Usage{}, "stop")
		if !r.store.WaitFor(wait, func(st *chattest.Store) bool { return st.FinishCalls() == 1 }) {
			t.Fatal("no save attempt")
		}
		go r.gen.Shutdown(context.Background(), 0)
		end := last(rest(t, s))
		if end.Kind != chat.EventFailed || end.Error.Code != apperr.Unavailable {
			t.Errorf("last event = %+v, want failed unavailable (interrupted)", end)
		}
		m, _ := r.store.Message(st.Started.AssistantMessageID)
		if m.Status != chat.StatusInterrupted || m.Content != "all of it" {
			t.Errorf("saved %q (%s), want all the text, interrupted", m.Content, m.Status)
		}
	})
}

// TestPanicFailsOneAnswer: a panic while an answer is written fails that
// answer (saved with its text) and nothing else.
func TestPanicFailsOneAnswer(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{})
	s, turn := r.send(t, "hello")
	st := next(t, s)
	turn.Say("before ")
	next(t, s)
	turn.Panic()
	end := last(rest(t, s))
	if end.Kind != chat.EventFailed || end.Error.Code != apperr.Internal {
		t.Fatalf("last event = %+v, want failed internal", end)
	}
	if m, _ := r.store.Message(st.Started.AssistantMessageID); m.Status != chat.StatusFailed || m.Content != "before " {
		t.Errorf("saved %q (%s), want the text so far, failed", m.Content, m.Status)
	}
	if u := r.store.Usage(r.user); u.Active != 0 {
		t.Errorf("the panicked answer still holds a slot: %+v", u)
	}
	s, turn = r.send(t, "again")
	turn.End(chat.Usage{}, "stop")
	if end := last(rest(t, s)); end.Kind != chat.EventCompleted {
		t.Errorf("after a panic the next answer ended with %+v", end)
	}
}

// TestInstanceCap: an instance writes at most MaxRunning answers at once,
// whoever asks; more answer resource_exhausted and save nothing.
func TestInstanceCap(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{MaxRunning: 1})
	r.send(t, "first")
	other := uuid.New()
	conv := r.store.AddConversation(other, chat.NewConversation{})
	_, err := r.gen.Send(t.Context(), other, chat.SendInput{ConversationID: conv, Content: "second"})
	var ae *apperr.Error
	if !errors.As(err, &ae) || ae.Code != apperr.ResourceExhausted || ae.RetryAfter != 1 {
		t.Fatalf("err = %v, want resource_exhausted retrying after 1s", err)
	}
	if u := r.store.Usage(other); u.Active != 0 || u.Reserved != 0 {
		t.Errorf("a refused answer holds %+v", u)
	}
}

// TestMaxDeltas: an answer's in-memory event list is bounded; an answer
// that reaches the bound ends as a token limit ends it.
func TestMaxDeltas(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{MaxDeltas: 3})
	s, turn := r.send(t, "hello")
	go turn.Say("a", "b", "c", "d", "e")
	evs := rest(t, s)
	end := last(evs)
	if got, want := kinds(evs), "started,delta,delta,delta,completed"; got != want {
		t.Fatalf("events = %s, want %s", got, want)
	}
	if end.Message.Content != "abc" || end.Message.FinishReason != "length" || end.Message.Status != chat.StatusCompleted {
		t.Errorf("saved %+v, want %q completed with finish reason length", end.Message, "abc")
	}
	select {
	case <-turn.Closed():
	case <-time.After(wait):
		t.Error("the model request was not closed")
	}
}

// TestStartsDuringShutdown: answers that start while Shutdown drains
// either run to an end or are refused; none is lost or left holding a
// slot, and the generator's bookkeeping never races (run under -race).
func TestStartsDuringShutdown(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{MaxConcurrent: 1000})
	// Answer whatever is asked, at once, until the test ends (goleak holds
	// every package to leaving no goroutine behind).
	done, answered := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(done); <-answered })
	go func() {
		defer close(answered)
		for {
			select {
			case <-done:
				return
			default:
			}
			turn := r.model.Next(20 * time.Millisecond)
			if turn == nil {
				continue
			}
			turn.Say("ok")
			turn.End(chat.Usage{}, "stop")
		}
	}()
	const senders = 40
	convs := make([]uuid.UUID, senders)
	for i := range convs {
		convs[i] = r.store.AddConversation(r.user, chat.NewConversation{Title: "t"})
	}
	results := make(chan error, senders)
	for i := range senders {
		go func() {
			s, err := r.gen.Send(context.Background(), r.user, chat.SendInput{ConversationID: convs[i], Content: "hi"})
			if err != nil {
				results <- err
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			for {
				ev, err := s.Next(ctx)
				if errors.Is(err, io.EOF) {
					results <- nil
					return
				}
				if err != nil {
					results <- err
					return
				}
				if ev.Kind == chat.EventFailed && ev.Error.Code != apperr.Unavailable {
					results <- ev.Error.Err()
					return
				}
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := r.gen.Shutdown(ctx, 0); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for range senders {
		if err := <-results; err != nil && apperr.CodeOf(err) != apperr.Unavailable {
			t.Errorf("a send during shutdown: %v", err)
		}
	}
	if u := r.store.Usage(r.user); u.Active != 0 || u.Reserved != 0 {
		t.Errorf("after shutdown the account holds %+v, want nothing", u)
	}
}

// TestDeletedDuringAnswer: deleting a conversation while its answer is
// written stops the answer at once (its model request closed) and tells
// followers not_found; what the answer held is released by the deletion.
func TestDeletedDuringAnswer(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{})
	s, turn := r.send(t, "hello")
	next(t, s)
	turn.Say("part")
	next(t, s)
	ids := r.store.Delete(r.conv)
	r.gen.EndDeleted(t.Context(), ids)
	select {
	case <-turn.Closed():
	case <-time.After(wait):
		t.Fatal("the model request was not closed")
	}
	end := last(rest(t, s))
	if end.Kind != chat.EventFailed || end.Error.Code != apperr.NotFound {
		t.Errorf("last event = %+v, want failed not_found", end)
	}
	if u := r.store.Usage(r.user); u.Active != 0 || u.Reserved != 0 {
		t.Errorf("after the delete the account holds %+v, want nothing", u)
	}
}

// TestStopBeforeFirstByte: an answer stopped while the provider has not
// answered yet is charged its prompt, which the provider read and bills.
func TestStopBeforeFirstByte(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{})
	r.model.Hang()
	s, err := r.gen.Send(t.Context(), r.user, chat.SendInput{ConversationID: r.conv, Content: "a question of some length"})
	if err != nil {
		t.Fatal(err)
	}
	st := next(t, s)
	if !r.model.WaitAsked(1, wait) {
		t.Fatal("the model was not asked")
	}
	m, err := r.gen.Stop(t.Context(), r.user, st.Started.GenerationID)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(chat.EstimateTokens("a question of some length"))
	if m.Status != chat.StatusStopped || m.Usage.PromptTokens != want {
		t.Errorf("stopped answer = %s with usage %+v, want stopped with %d prompt tokens", m.Status, m.Usage, want)
	}
	if u := r.store.Usage(r.user); u.Used != want || u.Active != 0 {
		t.Errorf("account = %+v, want %d used and no slot held", u, want)
	}
}

// TestRetriedEditAndRegenerate: an edit or a regenerate retried with the
// same client message id follows the first attempt's answer, while it
// streams and after it ended, and the model is asked once.
func TestRetriedEditAndRegenerate(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{})
	s, turn := r.send(t, "question")
	turn.End(chat.Usage{}, "stop")
	evs := rest(t, s)
	question, answer := evs[0].Started.UserMessage, last(evs).Message

	calls := map[string]func() (chat.Stream, error){
		"Edit": func() (chat.Stream, error) {
			return r.gen.Edit(t.Context(), r.user, chat.EditInput{MessageID: question.ID, Content: "better question", ClientMessageID: "edit-1"})
		},
		"Regenerate": func() (chat.Stream, error) {
			return r.gen.Regenerate(t.Context(), r.user, chat.RegenerateInput{MessageID: answer.ID, ClientMessageID: "regen-1"})
		},
	}
	for _, name := range []string{"Edit", "Regenerate"} {
		asked := len(r.model.Requests())
		first, err := calls[name]()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		turn := r.model.Next(wait)
		whileStreaming, err := calls[name]()
		if err != nil {
			t.Fatalf("%s retried while streaming: %v", name, err)
		}
		turn.Say("once")
		turn.End(chat.Usage{}, "stop")
		a, b := rest(t, first), rest(t, whileStreaming)
		afterEnd, err := calls[name]()
		if err != nil {
			t.Fatalf("%s retried after the end: %v", name, err)
		}
		c := rest(t, afterEnd)
		if id := last(a).Message.ID; last(b).Message.ID != id || last(c).Message.ID != id {
			t.Errorf("%s: the retries followed other answers than the first attempt's", name)
		}
		if n := len(r.model.Requests()) - asked; n != 1 {
			t.Errorf("%s: the model was asked %d times, want once", name, n)
		}
	}
}

// pricedTitler writes a title that cost tokens, as a model's would.
type pricedTitler struct{}

func (pricedTitler) Title(context.Context, string, string) (string, chat.Usage, error) {
	return "Priced", chat.Usage{PromptTokens: 30, CompletionTokens: 4}, nil
}

// TestTitleCharged: the tokens a title costs count against the user's
// quota beside the answer's.
func TestTitleCharged(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{Titler: pricedTitler{}})
	untitled := r.store.AddConversation(r.user, chat.NewConversation{})
	s, err := r.gen.Send(t.Context(), r.user, chat.SendInput{ConversationID: untitled, Content: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	turn := r.model.Next(wait)
	turn.End(chat.Usage{PromptTokens: 5, CompletionTokens: 1}, "stop")
	rest(t, s)
	if u := r.store.Usage(r.user); u.Used != 5+1+30+4 {
		t.Errorf("used %d tokens, want the answer's 6 and the title's 34", u.Used)
	}
}

// TestFollowerCaps: one user may follow at most MaxFollowersPerUser answers
// at once; a follower's place is free again when its request ends.
func TestFollowerCaps(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{MaxFollowersPerUser: 2})
	s, _ := r.send(t, "hello")
	genID := next(t, s).Started.GenerationID
	resume := func(ctx context.Context) error {
		_, err := r.gen.Resume(ctx, r.user, genID, 0)
		return err
	}
	first, endFirst := context.WithCancel(t.Context())
	for range 2 {
		if err := resume(first); err != nil {
			t.Fatalf("resume within the cap: %v", err)
		}
	}
	var ae *apperr.Error
	if err := resume(t.Context()); !errors.As(err, &ae) || ae.Code != apperr.ResourceExhausted || ae.RetryAfter != 1 {
		t.Fatalf("resume over the cap: %v, want resource_exhausted retrying after 1s", err)
	}
	if _, err := r.gen.Resume(t.Context(), uuid.New(), genID, 0); apperr.CodeOf(err) != apperr.NotFound {
		t.Errorf("another user's resume: %v, want not_found (their cap is their own)", err)
	}
	endFirst()
	deadline := time.Now().Add(wait)
	for resume(t.Context()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the places of ended requests were not given back")
		}
		time.Sleep(time.Millisecond) // the release runs as the ctx ends, on its own goroutine
	}
}

// squeeze drops repeats of a kind, so "artifact_delta,artifact_delta" reads
// as one: how a document is cut into deltas is the model's business.
func squeeze(evs []chat.Event) string {
	var out []string
	for _, ev := range evs {
		if k := string(ev.Kind); len(out) == 0 || out[len(out)-1] != k || k != string(chat.EventArtifactDelta) {
			out = append(out, k)
		}
	}
	return strings.Join(out, ",")
}

// TestToolLoop: the model creates an artifact, updates it, then answers;
// the client sees each call start, the document as it is written and what
// was saved, in order; usage counts every turn; the answer keeps its calls,
// and the next turn's prompt carries them.
func TestToolLoop(t *testing.T) {
	t.Parallel()
	tools := chattest.NewTools()
	r := newRig(t, chat.GeneratorConfig{Tools: tools})
	s, turn := r.send(t, "write a plan")
	if n := len(turn.Request.Tools); n != 2 {
		t.Fatalf("the first turn offered %d tools, want 2", n)
	}
	turn.Say("Let me write.")
	turn.Call(0, "call_1", "create_artifact", `{"title":"Plan","con`)
	turn.Call(0, "", "", `tent":"line 1\nline 2"}`)
	turn.End(chat.Usage{PromptTokens: 10, CompletionTokens: 5}, "tool_calls")

	second := r.model.Next(wait)
	if second == nil {
		t.Fatal("the model was not asked again after its tool call")
	}
	msgs := second.Request.Messages
	call, result := msgs[len(msgs)-2], msgs[len(msgs)-1]
	if call.Role != chat.RoleAssistant || len(call.ToolCalls) != 1 || call.ToolCalls[0].ID != "call_1" || call.Content != "Let me write." ||
		result.Role != chat.RoleTool || result.ToolCallID != "call_1" {
		t.Fatalf("the second turn's prompt ends with %+v, %+v; want the call and its result", call, result)
	}
	var created struct {
		ArtifactID string `json:"artifact_id"`
	}
	if err := json.Unmarshal([]byte(result.Content), &created); err != nil {
		t.Fatal(err)
	}
	second.Call(0, "call_2", "update_artifact", `{"artifact_id":"`+created.ArtifactID+`","content":"v2"}`)
	second.End(chat.Usage{PromptTokens: 20, CompletionTokens: 5}, "tool_calls")
	third := r.model.Next(wait)
	third.Say(" Done.")
	third.End(chat.Usage{PromptTokens: 30, CompletionTokens: 2}, "stop")

	evs := rest(t, s)
	want := "started,delta,tool_call,artifact_delta,tool_result,tool_call,artifact_delta,tool_result,delta,usage,completed"
	if got := squeeze(evs); got != want {
		t.Fatalf("events = %s\nwant     %s", got, want)
	}
	var document strings.Builder
	for _, ev := range evs {
		if ev.Kind == chat.EventArtifactDelta && ev.Tool.CallID == "call_1" {
			document.WriteString(ev.Text)
		}
		if ev.Kind == chat.EventToolResult && (ev.Tool.Artifact == nil || ev.Tool.Error != "") {
			t.Errorf("tool result %+v, want a saved artifact", ev.Tool)
		}
	}
	if document.String() != "line 1\nline 2" {
		t.Errorf("the document streamed as %q", document.String())
	}
	m := last(evs).Message
	if m.Content != "Let me write. Done." || len(m.ToolRounds) != 2 || m.ToolRounds[1].Calls[0].Artifact.Version != 2 {
		t.Errorf("saved %q with rounds %+v", m.Content, m.ToolRounds)
	}
	if m.Usage != (chat.Usage{PromptTokens: 60, CompletionTokens: 12}) {
		t.Errorf("usage = %+v, want every turn's: 60 prompt, 12 completion", m.Usage)
	}

	// The next turn: the model sees its earlier calls and their results.
	s, turn = r.send(t, "thanks")
	var roles []string
	for _, pm := range turn.Request.Messages {
		roles = append(roles, fmt.Sprintf("%s/%d", pm.Role, len(pm.ToolCalls)))
	}
	if got, want := strings.Join(roles, " "), "user/0 assistant/1 tool/0 assistant/1 tool/0 assistant/0 user/0"; got != want {
		t.Errorf("the next prompt is %s, want %s", got, want)
	}
	turn.End(chat.Usage{}, "stop")
	rest(t, s)
}

// TestToolRoundBound: tools are offered for MaxToolRounds turns; the turn
// after is offered none, and a call it makes anyway is not run.
func TestToolRoundBound(t *testing.T) {
	t.Parallel()
	tools := chattest.NewTools()
	r := newRig(t, chat.GeneratorConfig{Tools: tools, MaxToolRounds: 2})
	s, turn := r.send(t, "loop forever")
	for round := 1; round <= 3; round++ {
		if offered := len(turn.Request.Tools) > 0; offered != (round <= 2) {
			t.Fatalf("turn %d offered tools: %v", round, offered)
		}
		turn.Call(0, fmt.Sprintf("call_%d", round), "create_artifact", `{"title":"t","content":"c"}`)
		turn.End(chat.Usage{}, "tool_calls")
		if round < 3 {
			turn = r.model.Next(wait)
		}
	}
	end := last(rest(t, s))
	if end.Kind != chat.EventCompleted || len(end.Message.ToolRounds) != 2 {
		t.Fatalf("last event = %+v, want completed after 2 rounds of calls", end)
	}
	if n := len(tools.Calls()); n != 2 {
		t.Errorf("%d calls ran, want 2 (the unoffered one is not run)", n)
	}
}

// TestMalformedToolCall: a call the tool cannot carry out (arguments that
// are not JSON, an unknown tool) gives the model an error to correct,
// never a failed answer.
func TestMalformedToolCall(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{Tools: chattest.NewTools()})
	s, turn := r.send(t, "write")
	turn.Call(0, "call_1", "create_artifact", `{"title": oops`)
	turn.Call(1, "call_2", "delete_everything", `{}`)
	turn.End(chat.Usage{}, "tool_calls")
	second := r.model.Next(wait)
	msgs := second.Request.Messages
	if res := msgs[len(msgs)-2]; res.Role != chat.RoleTool || !strings.Contains(res.Content, "not a JSON object") {
		t.Errorf("the model was told %+v about its malformed call", res)
	}
	if res := msgs[len(msgs)-1]; !strings.Contains(res.Content, "no tool named") {
		t.Errorf("the model was told %+v about the unknown tool", res)
	}
	second.Say("Sorry.")
	second.End(chat.Usage{}, "stop")
	evs := rest(t, s)
	if end := last(evs); end.Kind != chat.EventCompleted || end.Message.Content != "Sorry." {
		t.Fatalf("last event = %+v, want the corrected answer completed", end)
	}
	var errs int
	for _, ev := range evs {
		if ev.Kind == chat.EventToolResult && ev.Tool.Error != "" {
			errs++
		}
	}
	if errs != 2 {
		t.Errorf("%d tool results carried an error, want 2", errs)
	}
}

// TestRetriedSendWhenRefused: a send retried with the same client message
// id attaches to the first attempt even where the retry alone would be
// refused: it names the parent the first attempt answered (so the branch
// it loads is not the streaming one), or the first attempt holds the
// user's last slot.
func TestRetriedSendWhenRefused(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{MaxConcurrent: 1})
	s, turn := r.send(t, "first")
	turn.End(chat.Usage{}, "stop")
	parent := last(rest(t, s)).Message.ID

	in := chat.SendInput{ConversationID: r.conv, Content: "second", ClientMessageID: "c-2", ParentID: parent}
	first, err := r.gen.Send(t.Context(), r.user, in)
	if err != nil {
		t.Fatal(err)
	}
	turn = r.model.Next(wait)
	retry, err := r.gen.Send(t.Context(), r.user, in)
	if err != nil {
		t.Fatalf("retry naming the parent while the first attempt streams: %v", err)
	}
	turn.End(chat.Usage{}, "stop")
	if a, b := last(rest(t, first)), last(rest(t, retry)); a.Message.ID != b.Message.ID {
		t.Errorf("the retry followed %s, want the first attempt's %s", b.Message.ID, a.Message.ID)
	}
}

// TestInstanceFollowerCap: an instance serves at most MaxFollowers resumed
// streams, whoever follows.
func TestInstanceFollowerCap(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{MaxFollowers: 1})
	s, _ := r.send(t, "hello")
	genID := next(t, s).Started.GenerationID
	if _, err := r.gen.Resume(t.Context(), r.user, genID, 0); err != nil {
		t.Fatal(err)
	}
	var ae *apperr.Error
	if _, err := r.gen.Resume(t.Context(), r.user, genID, 0); !errors.As(err, &ae) || ae.Code != apperr.ResourceExhausted {
		t.Errorf("a second follower on an instance that serves one: %v, want resource_exhausted", err)
	}
}

// splitLog fails the shared log's writes of the events after the first of
// one generation, as a Redis that refused them would, and passes every
// other write through. It counts the generations of each Write.
type splitLog struct {
	chat.EventLog
	fail uuid.UUID

	mu        sync.Mutex
	perWrite  []int
	failedAny bool
	finished  int
}

// waitFinished waits until n logs were finished.
func (l *splitLog) waitFinished(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		l.mu.Lock()
		done := l.finished >= n
		l.mu.Unlock()
		if done {
			return
		}
	}
	t.Fatalf("fewer than %d logs finished", n)
}

func (l *splitLog) Write(ctx context.Context, writes []chat.LogWrite) []error {
	errs := make([]error, len(writes))
	pass := make([]chat.LogWrite, 0, len(writes))
	l.mu.Lock()
	fail := l.fail
	l.mu.Unlock()
	for i, w := range writes {
		if w.GenerationID == fail && len(w.Events) > 0 && last(w.Events).Seq > 1 {
			errs[i] = errors.New("injected append failure")
			w.Events = slices.DeleteFunc(slices.Clone(w.Events), func(ev chat.Event) bool { return ev.Seq > 1 })
			l.mu.Lock()
			l.failedAny = true
			l.mu.Unlock()
		}
		pass = append(pass, w)
	}
	for i, err := range l.EventLog.Write(ctx, pass) {
		if errs[i] == nil {
			errs[i] = err
		}
	}
	l.mu.Lock()
	l.perWrite = append(l.perWrite, len(writes))
	for _, w := range writes {
		if w.Finish {
			l.finished++
		}
	}
	l.mu.Unlock()
	return errs
}

// TestMirrorOneFailingLog: the instance's mirror writes every answer's
// events to the shared log, in order and finished; when one answer's
// append fails, only that answer's log stops (still finished, so a remote
// follower reads the saved answer), and its local follower is unaffected.
func TestMirrorOneFailingLog(t *testing.T) {
	t.Parallel()
	r := newRig(t, chat.GeneratorConfig{})
	log := &splitLog{EventLog: r.events}
	r.gen = r.instance(t, chat.GeneratorConfig{}, log)
	convB := r.store.AddConversation(r.user, chat.NewConversation{Title: "test"})

	sA, turnA := r.send(t, "hello")
	startA := next(t, sA)
	sB, err := r.gen.Send(t.Context(), r.user, chat.SendInput{ConversationID: convB, Content: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	turnB := r.model.Next(wait)
	startB := next(t, sB)
	log.mu.Lock()
	log.fail = startB.Started.GenerationID
	log.mu.Unlock()
	turnA.Say("a1", "a2")
	turnB.Say("b1", "b2")
	turnA.End(chat.Usage{}, "stop")
	turnB.End(chat.Usage{}, "stop")
	if got, want := kinds(rest(t, sA)), "delta,delta,usage,completed"; got != want {
		t.Errorf("local A = %s, want %s", got, want)
	}
	if got, want := kinds(rest(t, sB)), "delta,delta,usage,completed"; got != want {
		t.Errorf("local B = %s, want %s", got, want)
	}

	log.waitFinished(t, 2)
	other := r.instance(t, chat.GeneratorConfig{}, r.events)
	remoteA, err := other.Resume(t.Context(), r.user, startA.Started.GenerationID, 0)
	if err != nil {
		t.Fatal(err)
	}
	evs := rest(t, remoteA)
	if got, want := kinds(evs), "started,delta,delta,usage,completed"; got != want {
		t.Errorf("remote A = %s, want %s", got, want)
	}
	for i, ev := range evs {
		if ev.Seq != int64(i)+1 {
			t.Errorf("remote A event %d has seq %d", i, ev.Seq)
		}
	}
	remoteB, err := other.Resume(t.Context(), r.user, startB.Started.GenerationID, 0)
	if err != nil {
		t.Fatal(err)
	}
	evs = rest(t, remoteB)
	if got, want := kinds(evs), "started,completed"; got != want || last(evs).Message.Content != "b1b2" {
		t.Errorf("remote B = %s, want %s with the saved answer", got, want)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if !log.failedAny {
		t.Error("no write of B failed")
	}
	t.Logf("generations per write: %v", log.perWrite)
}
