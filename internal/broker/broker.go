// Package broker carries the event logs and stop signals of generations
// between instances of the service.
//
// A generation runs on one instance, but the client that follows it may
// reconnect to any instance, replay what it missed and follow the rest, and
// any instance may be asked to stop it. Redis serves this across instances;
// Memory gives the same behaviour inside one process for development.
//
// The Broker interface carries opaque, sequenced payloads; ChatLog puts
// the chat domain's events on it (encoded as JSON) and is what the chat
// domain sees, as its chat.EventLog. Another domain with live events (agent
// runs) gets its own codec over the same Broker.
package broker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/clock"
)

// Event is one entry of a generation's log.
type Event struct {
	// Seq numbers the events of a generation 1, 2, 3, … as assigned by
	// the caller of Append; a client resumes after the last Seq it saw.
	Seq int64
	// Data is the encoded event. Followers share it: do not modify it.
	Data []byte
}

// Broker is the byte-level event log and stop signal of generations, on
// Redis or in memory.
type Broker interface {
	// Append adds events, in order, to the generation's log, creating the
	// log on the first event, and wakes followers. It returns ErrSequence
	// if an event's Seq is not above the last Seq or the log is finished.
	Append(ctx context.Context, generationID uuid.UUID, evs ...Event) error
	// Finish marks the log complete, so followers get the remaining
	// events and then see their channel close, and makes the log expire
	// after the retention. Finishing a finished log does nothing harmful.
	Finish(ctx context.Context, generationID uuid.UUID) error
	// Write makes several generations' appends and finishes at once, in
	// one round trip on Redis: each write appends its events as Append
	// does and then, if it says Finish, finishes the log as Finish does
	// (also when its append failed, as Append then Finish would). It
	// returns one error per write, nil for a write made in full; one
	// write failing leaves the others made.
	Write(ctx context.Context, writes []Write) []error
	// Follow replays the events with Seq > afterSeq and then follows live
	// ones until Finish, ctx end, or an error. The returned channel is
	// closed at the end; the returned func then tells why: nil after
	// Finish, ctx.Err() after ctx ended, ErrNotFound if the log expired
	// meanwhile, or the failure. If the log does not exist (never created
	// or expired), Follow returns ErrNotFound at once: a generation's log
	// exists from its first Append. Read the channel until it closes or
	// end ctx; a follower nobody reads from waits for ctx forever.
	Follow(ctx context.Context, generationID uuid.UUID, afterSeq int64) (<-chan Event, func() error, error)
	// Stop asks the instance that runs the generation to stop it. It does
	// not check that the generation exists or runs; instances ignore ids
	// they do not run.
	Stop(ctx context.Context, generationID uuid.UUID) error
	// Stops delivers the ids of generations that someone asked to stop,
	// from any instance. Call it once per process at start; the channel is
	// closed when ctx ends. Stops asked while no subscription is up (for
	// Redis: during an outage) are lost.
	Stops(ctx context.Context) (<-chan uuid.UUID, error)
}

// Write is one generation's part of Broker.Write.
type Write struct {
	GenerationID uuid.UUID
	Events       []Event
	Finish       bool
}

// ErrNotFound reports a log that was never created or has expired.
var ErrNotFound = errors.New("broker: generation log not found")

// ErrSequence reports an Append whose Seq is not above the last one, or
// that comes after Finish. A retried Append that had in fact succeeded
// gets it too.
var ErrSequence = errors.New("broker: event out of sequence or log finished")

const (
	defaultMaxGeneration = time.Hour
	defaultBlock         = 5 * time.Second
)

// Option adjusts a broker made by NewRedis or NewMemory.
type Option func(*options)

type options struct {
	maxGeneration time.Duration
	block         time.Duration
	clock         clock.Clock
}

func newOptions(opts []Option) options {
	o := options{maxGeneration: defaultMaxGeneration, block: defaultBlock, clock: clock.Real()}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithMaxGeneration sets the longest a generation runs (default one hour).
// The log of a generation that is never finished, because its instance
// crashed, expires that long plus the retention after its last event.
func WithMaxGeneration(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.maxGeneration = d
		}
	}
}

// WithBlock sets how often a Redis follower reads even when no
// notification woke it (default five seconds): the bound on the delay
// after a lost notification, and on how late a follower notices a log that
// expired. A waiting follower holds no connection. Memory ignores it.
func WithBlock(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.block = d
		}
	}
}

// WithClock sets the clock Memory expires logs by (default the system
// clock), so tests can step past a retention instead of waiting it out.
// Redis ignores it: its logs expire by the Redis server's own clock.
func WithClock(c clock.Clock) Option {
	return func(o *options) {
		if c != nil {
			o.clock = c
		}
	}
}

// outcome holds why a Follow ended, for the func that Follow returns.
type outcome struct {
	mu  sync.Mutex
	err error
}

func (o *outcome) set(err error) {
	o.mu.Lock()
	o.err = err
	o.mu.Unlock()
}

func (o *outcome) get() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}
