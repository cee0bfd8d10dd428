package broker

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/clock"
)

// stopBuffer lets Stop hand over an id without waiting for a subscriber
// that is busy stopping another generation.
const stopBuffer = 16

// Memory is a Broker inside one process, for development and tests without
// Redis. It behaves like Redis, expiry included, so code that works on it
// works across instances.
type Memory struct {
	retention time.Duration
	opts      options

	mu   sync.Mutex
	logs map[uuid.UUID]*memoryLog

	// subsMu is held for reading while Stop sends, so that a subscription
	// is never closed under a sending Stop.
	subsMu sync.RWMutex
	subs   map[*memorySub]struct{}
}

type memoryLog struct {
	events   []Event
	finished bool
	expired  bool
	// changed is closed and replaced whenever the log changes, waking
	// every follower without a sync.Cond, which cannot wait on a ctx.
	changed  chan struct{}
	expireAt time.Time
	timer    clock.Timer
}

type memorySub struct {
	ch   chan uuid.UUID
	done chan struct{}
}

var _ Broker = (*Memory)(nil)

// NewMemory returns a Broker that keeps logs in memory and drops them
// retention after Finish, by the clock of WithClock. It panics if
// retention is not positive.
func NewMemory(retention time.Duration, opts ...Option) *Memory {
	if retention <= 0 {
		panic("broker: retention must be positive")
	}
	return &Memory{
		retention: retention,
		opts:      newOptions(opts),
		logs:      make(map[uuid.UUID]*memoryLog),
		subs:      make(map[*memorySub]struct{}),
	}
}

// Append implements Broker.
func (m *Memory) Append(ctx context.Context, generationID uuid.UUID, evs ...Event) error {
	for _, ev := range evs {
		if err := m.append(ctx, generationID, ev); err != nil {
			return err
		}
	}
	return nil
}

// Write implements Broker.
func (m *Memory) Write(ctx context.Context, writes []Write) []error {
	errs := make([]error, len(writes))
	for i, w := range writes {
		errs[i] = m.Append(ctx, w.GenerationID, w.Events...)
		if w.Finish {
			if err := m.Finish(ctx, w.GenerationID); errs[i] == nil {
				errs[i] = err
			}
		}
	}
	return errs
}

func (m *Memory) append(ctx context.Context, generationID uuid.UUID, ev Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	log := m.logs[generationID]
	if log == nil {
		log = &memoryLog{changed: make(chan struct{})}
		m.logs[generationID] = log
	}
	if log.finished {
		return fmt.Errorf("%w: append %d after finish", ErrSequence, ev.Seq)
	}
	if last := lastSeq(log.events); ev.Seq <= last {
		return fmt.Errorf("%w: append %d after %d", ErrSequence, ev.Seq, last)
	}
	// Copy, as Redis would: the caller may reuse its buffer.
	ev.Data = append([]byte(nil), ev.Data...)
	log.events = append(log.events, ev)
	m.expireLater(generationID, log, m.opts.maxGeneration+m.retention)
	log.broadcast()
	return nil
}

func lastSeq(events []Event) int64 {
	if len(events) == 0 {
		return 0
	}
	return events[len(events)-1].Seq
}

// Finish implements Broker.
func (m *Memory) Finish(ctx context.Context, generationID uuid.UUID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	log := m.logs[generationID]
	if log == nil {
		// As with Redis, finishing an unknown log leaves an empty,
		// finished one, so followers see the end rather than ErrNotFound.
		log = &memoryLog{changed: make(chan struct{})}
		m.logs[generationID] = log
	}
	log.finished = true
	m.expireLater(generationID, log, m.retention)
	log.broadcast()
	return nil
}

// expireLater drops the log after ttl unless it is pushed back again.
// Callers hold m.mu.
func (m *Memory) expireLater(generationID uuid.UUID, log *memoryLog, ttl time.Duration) {
	clk := m.opts.clock
	log.expireAt = clk.Now().Add(ttl)
	if log.timer != nil {
		log.timer.Reset(ttl)
		return
	}
	log.timer = clk.AfterFunc(ttl, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		// A Reset may race with a firing timer; the deadline decides.
		if m.logs[generationID] != log || clk.Now().Before(log.expireAt) {
			return
		}
		delete(m.logs, generationID)
		log.expired = true
		log.events = nil
		log.broadcast()
	})
}

func (log *memoryLog) broadcast() {
	close(log.changed)
	log.changed = make(chan struct{})
}

// Follow implements Broker.
func (m *Memory) Follow(ctx context.Context, generationID uuid.UUID, afterSeq int64) (<-chan Event, func() error, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	log := m.logs[generationID]
	m.mu.Unlock()
	if log == nil {
		return nil, nil, ErrNotFound
	}
	out := make(chan Event)
	result := new(outcome)
	go func() {
		defer close(out)
		result.set(m.follow(ctx, log, afterSeq, out))
	}()
	return out, result.get, nil
}

// follow sends the log's events after afterSeq to out until the log is
// finished, and returns why it stopped.
func (m *Memory) follow(ctx context.Context, log *memoryLog, afterSeq int64, out chan<- Event) error {
	next := -1
	for {
		m.mu.Lock()
		if next < 0 {
			next = sort.Search(len(log.events), func(i int) bool { return log.events[i].Seq > afterSeq })
		}
		if log.expired {
			m.mu.Unlock()
			return ErrNotFound
		}
		// Appends never touch events[:len], so the batch can be read
		// after unlocking even if the slice grows meanwhile.
		batch := log.events[next:]
		finished, changed := log.finished, log.changed
		m.mu.Unlock()

		for _, ev := range batch {
			select {
			case out <- ev:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		next += len(batch)
		if finished {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stop implements Broker. It waits only while a subscriber's buffer is
// full, and no longer than ctx allows.
func (m *Memory) Stop(ctx context.Context, generationID uuid.UUID) error {
	m.subsMu.RLock()
	defer m.subsMu.RUnlock()
	for sub := range m.subs {
		select {
		case sub.ch <- generationID:
		case <-sub.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Stops implements Broker.
func (m *Memory) Stops(ctx context.Context) (<-chan uuid.UUID, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sub := &memorySub{ch: make(chan uuid.UUID, stopBuffer), done: make(chan struct{})}
	m.subsMu.Lock()
	m.subs[sub] = struct{}{}
	m.subsMu.Unlock()
	go func() {
		<-ctx.Done()
		// Release a Stop blocked on this subscriber before taking the
		// write lock it holds for reading.
		close(sub.done)
		m.subsMu.Lock()
		delete(m.subs, sub)
		m.subsMu.Unlock()
		close(sub.ch)
	}()
	return sub.ch, nil
}
