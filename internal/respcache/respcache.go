// Package respcache keeps the response cache (chat.ResponseCache) in Redis:
// one string per answer, under the deployment's key prefix, expiring after
// the configured TTL. Every instance sharing the Redis and the prefix
// shares the cache.
package respcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/parleyhq/parley/internal/chat"
)

// Redis is a chat.ResponseCache on a Redis client from internal/redisconn.
type Redis struct {
	client *redis.Client
	prefix string
	ttl    time.Duration
}

var _ chat.ResponseCache = (*Redis)(nil)

// New returns a cache whose keys start with prefix and live for ttl.
func New(client *redis.Client, prefix string, ttl time.Duration) *Redis {
	return &Redis{client: client, prefix: prefix + "rc:", ttl: ttl}
}

// Get implements chat.ResponseCache.
func (r *Redis) Get(ctx context.Context, key string) (chat.CachedAnswer, bool, error) {
	b, err := r.client.Get(ctx, r.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return chat.CachedAnswer{}, false, nil
	}
	if err != nil {
		return chat.CachedAnswer{}, false, fmt.Errorf("respcache: get: %w", err)
	}
	var a chat.CachedAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		// Not what Put writes: treated as absent, and overwritten by the
		// next answer.
		return chat.CachedAnswer{}, false, nil
	}
	return a, true, nil
}

// Put implements chat.ResponseCache.
func (r *Redis) Put(ctx context.Context, key string, a chat.CachedAnswer) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("respcache: encode: %w", err)
	}
	if err := r.client.Set(ctx, r.prefix+key, b, r.ttl).Err(); err != nil {
		return fmt.Errorf("respcache: set: %w", err)
	}
	return nil
}

// ForgetUser deletes every answer cached for userID alone (DeleteMe).
// Answers cached for every user (RESPONSE_CACHE_SHARED) name no user and
// expire with their TTL.
func (r *Redis) ForgetUser(ctx context.Context, userID uuid.UUID) error {
	iter := r.client.Scan(ctx, 0, r.prefix+chat.UserCacheKeyPrefix(userID)+"*", forgetBatch).Iterator()
	batch := make([]string, 0, forgetBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := r.client.Unlink(ctx, batch...).Err()
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == forgetBatch {
			if err := flush(); err != nil {
				return fmt.Errorf("respcache: forget: %w", err)
			}
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("respcache: forget: %w", err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("respcache: forget: %w", err)
	}
	return nil
}

// forgetBatch is how many keys ForgetUser asks SCAN for and unlinks at once.
const forgetBatch = 500
