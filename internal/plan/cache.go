package plan

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Cache remembers each user's plan for a while, so that the limits checked
// on every call do not ask the database each time. Forget drops a user's
// entry when their plan changes; the app calls it on every instance from
// the database's notifications, so a change applies at once, and ForgetAll
// whenever it starts listening again (notifications sent meanwhile are
// lost); the TTL bounds how stale an entry can be otherwise. A read that
// was under way when a Forget came does not store what it read, which may
// predate the change.
type Cache struct {
	next Resolver
	ttl  time.Duration
	max  int
	now  func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
	// forgets counts Forget and ForgetAll calls: a read stores its answer
	// only if none came while it ran.
	forgets uint64
}

type cacheKey struct {
	user      uuid.UUID
	anonymous bool // the caller's token, which the plan may depend on
}

type cacheEntry struct {
	plan    Plan
	expires time.Time
}

// NewCache returns a Cache of next's answers, each kept for ttl, at most
// max users at once (when full, it starts over empty).
func NewCache(next Resolver, ttl time.Duration, max int) *Cache {
	return &Cache{next: next, ttl: ttl, max: max, now: time.Now, entries: map[cacheKey]cacheEntry{}}
}

// PlanOf implements Resolver. Errors are not cached.
func (c *Cache) PlanOf(ctx context.Context, userID uuid.UUID) (Plan, error) {
	key := cacheKey{user: userID, anonymous: CallerFrom(ctx).Anonymous}
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	forgets := c.forgets
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.plan, nil
	}
	p, err := c.next.PlanOf(ctx, userID)
	if err != nil {
		return Plan{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forgets != forgets {
		// The plan may have changed after it was read.
		return p, nil
	}
	if len(c.entries) >= c.max {
		c.entries = map[cacheKey]cacheEntry{}
	}
	c.entries[key] = cacheEntry{plan: p, expires: now.Add(c.ttl)}
	return p, nil
}

// Forget drops what the cache knows of userID's plan.
func (c *Cache) Forget(userID uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgets++
	delete(c.entries, cacheKey{user: userID})
	delete(c.entries, cacheKey{user: userID, anonymous: true})
}

// ForgetAll drops every entry: the app calls it when it starts listening
// for plan changes, having missed those sent before.
func (c *Cache) ForgetAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgets++
	clear(c.entries)
}
