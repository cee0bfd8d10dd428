package chat

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// The response cache: an exact-match cache of answers to deterministic
// requests, off unless GeneratorConfig.Cache is set.
//
// Deterministic means the model is asked with temperature 0
// (GeneratorConfig.Temperature); without a temperature the provider's
// default applies (1 for OpenAI), which samples, and nothing is cached. The
// key is a hash of the whole first request as the model would get it
// (model, every prompt message with the system prompt and whatever an
// attachment adds to it, the output cap, the tools offered, the
// temperature), scoped to the user unless CacheShared. Only an answer that
// ended on its own ("stop") in its first turn, without tool calls, is
// kept: a tool's result depends on the user's data at the time, and a cut
// answer is not the answer.
//
// A hit streams as an answer does (started, deltas, usage, completed), is
// saved like one with Cached set, and is charged its prompt's estimate and
// zero completion tokens: no model was asked.

// ResponseCache keeps answers by key for a time of its own (the Redis
// adapter's TTL); internal/respcache implements it on Redis.
type ResponseCache interface {
	// Get returns the answer kept under key; ok is false when there is none
	// (never kept, or expired). An error means the cache could not be read,
	// and the model is asked.
	Get(ctx context.Context, key string) (a CachedAnswer, ok bool, err error)
	// Put keeps a under key, replacing what was there.
	Put(ctx context.Context, key string, a CachedAnswer) error
}

// CachedAnswer is what the response cache keeps of an answer.
type CachedAnswer struct {
	Content      string `json:"content"`
	FinishReason string `json:"finish_reason"`
}

// cacheTimeout bounds one cache read or write: the cache is an
// optimization, and a slow Redis must not hold up the first token.
const cacheTimeout = 250 * time.Millisecond

// cacheDeltaBytes is the most text one delta of a cached answer carries,
// so a long answer streams as several events of the usual size.
const cacheDeltaBytes = 1024

// deterministic reports whether answers may be cached: a cache is set and
// the model is asked with temperature 0.
func (g *Generator) deterministic() bool {
	return g.cfg.Cache != nil && g.cfg.Temperature != nil && *g.cfg.Temperature == 0
}

// cacheKey names the answer to req for userID (every user's when shared).
func (g *Generator) cacheKey(userID uuid.UUID, req ModelRequest) (string, bool) {
	b, err := json.Marshal(req)
	if err != nil {
		return "", false
	}
	scope := UserCacheKeyPrefix(userID)
	if g.cfg.CacheShared {
		scope = "shared:"
	}
	sum := sha256.Sum256(b)
	return scope + hex.EncodeToString(sum[:]), true
}

// UserCacheKeyPrefix starts the key of every answer cached for userID
// alone (shared answers carry no user), so that deleting the user can
// delete them.
func UserCacheKeyPrefix(userID uuid.UUID) string { return "u:" + userID.String() + ":" }

// lookupCache returns the cached answer to an answer's first request, if
// any. A cache that fails or is slow counts as a miss.
func (g *Generator) lookupCache(ctx context.Context, userID uuid.UUID, model string, prompt []PromptMessage) (string, *CachedAnswer) {
	if !g.deterministic() {
		return "", nil
	}
	key, ok := g.cacheKey(userID, g.firstRequest(model, prompt))
	if !ok {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, cacheTimeout)
	defer cancel()
	a, hit, err := g.cfg.Cache.Get(ctx, key)
	if err != nil {
		g.log.Warn("response cache read failed; asking the model", "err", err)
		return key, nil
	}
	if !hit {
		return key, nil
	}
	return key, &a
}

// streamCached relays a cached answer as the model's would be relayed.
func (gen *generation) streamCached(a CachedAnswer) (Usage, string, error) {
	text := CleanText(a.Content)
	for text != "" {
		n := min(len(text), cacheDeltaBytes)
		for n < len(text) && !utf8.RuneStart(text[n]) {
			n++
		}
		if full := gen.appendText(text[:n]); full {
			usage := Usage{PromptTokens: promptTokens(gen.prompt)}
			return usage, "length", gen.tooManyEvents()
		}
		text = text[n:]
	}
	usage := Usage{PromptTokens: promptTokens(gen.prompt)}
	gen.emit(Event{Kind: EventUsage, Usage: &usage})
	return usage, a.FinishReason, nil
}

// keepAnswer puts an answer the model wrote in the cache when it may be
// reused: asked deterministically, ended on its own, no tool calls.
func (gen *generation) keepAnswer(finishReason string, err error) {
	if gen.cacheKey == "" || gen.cached != nil || err != nil || finishReason != "stop" || len(gen.toolRounds()) > 0 {
		return
	}
	content := gen.content()
	if content == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(gen.ctx), cacheTimeout)
	defer cancel()
	if err := gen.g.cfg.Cache.Put(ctx, gen.cacheKey, CachedAnswer{Content: content, FinishReason: finishReason}); err != nil {
		gen.g.log.Warn("response cache write failed", "generation_id", gen.id, "err", err)
	}
}
