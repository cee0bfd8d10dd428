package chattest

import (
	"context"
	"sync"

	"github.com/parleyhq/parley/internal/chat"
)

// Cache is an in-memory chat.ResponseCache that never expires and counts
// its calls.
type Cache struct {
	mu         sync.Mutex
	answers    map[string]chat.CachedAnswer
	gets, puts int
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{answers: map[string]chat.CachedAnswer{}} }

// Get implements chat.ResponseCache.
func (c *Cache) Get(_ context.Context, key string) (chat.CachedAnswer, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets++
	a, ok := c.answers[key]
	return a, ok, nil
}

// Put implements chat.ResponseCache.
func (c *Cache) Put(_ context.Context, key string, a chat.CachedAnswer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.puts++
	c.answers[key] = a
	return nil
}

// Calls returns how many Gets and Puts the cache served.
func (c *Cache) Calls() (gets, puts int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets, c.puts
}
