package chat_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/chat/chattest"
)

var zeroTemperature = 0.0

// answerOnce sends content in a new conversation of userID, has the model
// answer text, and returns the completed message.
func answerOnce(t *testing.T, r *rig, userID uuid.UUID, content, text, reason string) chat.Message {
	t.Helper()
	conv := r.store.AddConversation(userID, chat.NewConversation{Title: "c", SystemPrompt: "Be brief."})
	s, err := r.gen.Send(t.Context(), userID, chat.SendInput{ConversationID: conv, Content: content})
	if err != nil {
		t.Fatal(err)
	}
	turn := r.model.Next(wait)
	if turn == nil {
		t.Fatal("the model was not asked")
	}
	turn.Say(text)
	turn.End(chat.Usage{PromptTokens: 7, CompletionTokens: 3}, reason)
	evs := rest(t, s)
	if last(evs).Kind != chat.EventCompleted {
		t.Fatalf("events %s", kinds(evs))
	}
	return *last(evs).Message
}

// sendCached sends content in a new conversation of userID and returns
// the events, the model not being asked.
func sendCached(t *testing.T, r *rig, userID uuid.UUID, content string) []chat.Event {
	t.Helper()
	conv := r.store.AddConversation(userID, chat.NewConversation{Title: "c", SystemPrompt: "Be brief."})
	s, err := r.gen.Send(t.Context(), userID, chat.SendInput{ConversationID: conv, Content: content})
	if err != nil {
		t.Fatal(err)
	}
	return rest(t, s)
}

func TestResponseCache(t *testing.T) {
	t.Parallel()
	t.Run("HitAfterMiss", func(t *testing.T) {
		t.Parallel()
		cache := chattest.NewCache()
		r := newRig(t, chat.GeneratorConfig{Cache: cache, Temperature: &zeroTemperature})
		first := answerOnce(t, r, r.user, "What is 2+2?", "Four.", "stop")
		if first.Cached {
			t.Fatal("the model's answer is marked cached")
		}
		if reqs := r.model.Requests(); len(reqs) != 1 || reqs[0].Temperature == nil || *reqs[0].Temperature != 0 {
			t.Fatalf("the model was asked %v; want once, at temperature 0", reqs)
		}
		evs := sendCached(t, r, r.user, "What is 2+2?")
		if got := kinds(evs); got != "started,delta,usage,completed" {
			t.Fatalf("a hit streams %s", got)
		}
		if n := len(r.model.Requests()); n != 1 {
			t.Fatalf("the model was asked %d times, want once", n)
		}
		m := *last(evs).Message
		if !m.Cached || m.Content != "Four." || m.FinishReason != "stop" || m.Usage.CompletionTokens != 0 || m.Usage.PromptTokens == 0 {
			t.Fatalf("cached answer saved as %+v", m)
		}
		saved, _ := r.store.Message(m.ID)
		if !saved.Cached || saved.Usage.CompletionTokens != 0 {
			t.Errorf("stored %+v", saved)
		}
		if evs[1].Text != "Four." {
			t.Errorf("delta %q", evs[1].Text)
		}
		// The hit is not written back.
		if _, puts := cache.Calls(); puts != 1 {
			t.Errorf("puts = %d, want 1", puts)
		}
	})
	t.Run("PerUser", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, chat.GeneratorConfig{Cache: chattest.NewCache(), Temperature: &zeroTemperature})
		answerOnce(t, r, r.user, "hello", "Hi.", "stop")
		if m := answerOnce(t, r, uuid.New(), "hello", "Hello!", "stop"); m.Cached {
			t.Fatal("another user got the first user's cached answer")
		}
	})
	t.Run("Shared", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, chat.GeneratorConfig{Cache: chattest.NewCache(), Temperature: &zeroTemperature, CacheShared: true})
		answerOnce(t, r, r.user, "hello", "Hi.", "stop")
		evs := sendCached(t, r, uuid.New(), "hello")
		if m := last(evs).Message; m == nil || !m.Cached || m.Content != "Hi." {
			t.Fatalf("shared cache: %s", kinds(evs))
		}
	})
	t.Run("OtherPrompt", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, chat.GeneratorConfig{Cache: chattest.NewCache(), Temperature: &zeroTemperature})
		answerOnce(t, r, r.user, "hello", "Hi.", "stop")
		if m := answerOnce(t, r, r.user, "hello!", "Hey.", "stop"); m.Cached {
			t.Fatal("a different prompt was served from the cache")
		}
	})
	t.Run("NotCut", func(t *testing.T) {
		t.Parallel()
		cache := chattest.NewCache()
		r := newRig(t, chat.GeneratorConfig{Cache: cache, Temperature: &zeroTemperature})
		answerOnce(t, r, r.user, "hello", "Hi, let me", "length")
		if _, puts := cache.Calls(); puts != 0 {
			t.Fatalf("an answer cut at its length was cached")
		}
	})
	t.Run("NotWithToolCalls", func(t *testing.T) {
		t.Parallel()
		cache := chattest.NewCache()
		r := newRig(t, chat.GeneratorConfig{Cache: cache, Temperature: &zeroTemperature, Tools: chattest.NewTools()})
		conv := r.store.AddConversation(r.user, chat.NewConversation{Title: "c"})
		s, err := r.gen.Send(t.Context(), r.user, chat.SendInput{ConversationID: conv, Content: "write a plan"})
		if err != nil {
			t.Fatal(err)
		}
		turn := r.model.Next(wait)
		turn.Call(0, "call_1", "create_artifact", `{"title":"Plan","content":"x"}`)
		turn.End(chat.Usage{PromptTokens: 10, CompletionTokens: 5}, "tool_calls")
		second := r.model.Next(wait)
		second.Say("Done.")
		second.End(chat.Usage{PromptTokens: 20, CompletionTokens: 2}, "stop")
		if evs := rest(t, s); last(evs).Kind != chat.EventCompleted {
			t.Fatalf("events %s", kinds(evs))
		}
		if _, puts := cache.Calls(); puts != 0 {
			t.Fatal("an answer with tool calls was cached")
		}
	})
	for name, temperature := range map[string]*float64{"NotWithoutTemperature": nil, "NotAtTemperature": ptr(0.7)} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cache := chattest.NewCache()
			r := newRig(t, chat.GeneratorConfig{Cache: cache, Temperature: temperature})
			answerOnce(t, r, r.user, "hello", "Hi.", "stop")
			if m := answerOnce(t, r, r.user, "hello", "Hi.", "stop"); m.Cached {
				t.Fatal("a sampled answer was served from the cache")
			}
			if gets, puts := cache.Calls(); gets != 0 || puts != 0 {
				t.Fatalf("cache used %d/%d times without temperature 0", gets, puts)
			}
		})
	}
	t.Run("RegenerateAsksTheModel", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, chat.GeneratorConfig{Cache: chattest.NewCache(), Temperature: &zeroTemperature})
		first := answerOnce(t, r, r.user, "hello", "Hi.", "stop")
		s, err := r.gen.Regenerate(t.Context(), r.user, chat.RegenerateInput{MessageID: first.ID})
		if err != nil {
			t.Fatal(err)
		}
		turn := r.model.Next(wait)
		if turn == nil {
			t.Fatal("regenerating did not ask the model")
		}
		turn.Say("Hello.")
		turn.End(chat.Usage{PromptTokens: 7, CompletionTokens: 3}, "stop")
		if m := last(rest(t, s)).Message; m == nil || m.Cached {
			t.Fatalf("regenerated answer %+v", m)
		}
	})
}

func ptr[T any](v T) *T { return &v }
