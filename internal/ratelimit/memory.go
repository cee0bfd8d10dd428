package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/parleyhq/parley/internal/clock"
)

// Memory is an in-process limiter with redis_rate's semantics (GCRA: each
// key keeps a theoretical arrival time). Keys idle past their reset are
// dropped by a sweep, so memory stays bounded by the active keys.
type Memory struct {
	mu        sync.Mutex
	tat       map[string]time.Time
	clock     clock.Clock
	lastSweep time.Time
}

// NewMemory returns an empty in-process limiter.
func NewMemory(opts ...Option) *Memory {
	return &Memory{tat: map[string]time.Time{}, clock: newOptions(opts).clock}
}

// Allow implements Limiter.
func (m *Memory) Allow(_ context.Context, key string, limit Limit) (Result, error) {
	now := m.clock.Now()
	interval := limit.Period / time.Duration(limit.Rate)
	burstOffset := interval * time.Duration(limit.Burst)

	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	tat, ok := m.tat[key]
	if !ok || tat.Before(now) {
		tat = now
	}
	newTAT := tat.Add(interval)
	allowAt := newTAT.Add(-burstOffset)
	if diff := now.Sub(allowAt); diff < 0 {
		return Result{Limit: limit, RetryAfter: -diff, ResetAfter: tat.Sub(now)}, nil
	} else {
		m.tat[key] = newTAT
		return Result{Allowed: true, Limit: limit, Remaining: int(diff / interval), ResetAfter: newTAT.Sub(now)}, nil
	}
}

// Peek reports what Allow would answer for key without counting an event.
func (m *Memory) Peek(key string, limit Limit) Result {
	now := m.clock.Now()
	interval := limit.Period / time.Duration(limit.Rate)
	burstOffset := interval * time.Duration(limit.Burst)
	m.mu.Lock()
	tat, ok := m.tat[key]
	m.mu.Unlock()
	if !ok || tat.Before(now) {
		tat = now
	}
	allowAt := tat.Add(interval).Add(-burstOffset)
	if diff := now.Sub(allowAt); diff < 0 {
		return Result{Limit: limit, RetryAfter: -diff, ResetAfter: tat.Sub(now)}
	} else {
		return Result{Allowed: true, Limit: limit, Remaining: int(diff/interval) + 1, ResetAfter: tat.Sub(now)}
	}
}

// sweep drops keys whose limit has fully reset, at most once a minute.
func (m *Memory) sweep(now time.Time) {
	if now.Sub(m.lastSweep) < time.Minute {
		return
	}
	m.lastSweep = now
	for k, tat := range m.tat {
		if tat.Before(now) {
			delete(m.tat, k)
		}
	}
}
