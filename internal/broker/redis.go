package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// A log is a Redis stream whose entry ids are "0-<seq>": Redis then keeps
// the order itself (XADD refuses an id not above the last one), replay
// after a Seq is a plain id range, and the finish marker, added with an
// automatic "<unix ms>-0" id, sorts after every event and makes any later
// Append fail.
const (
	fieldData   = "d"   // the event's payload
	fieldFinish = "end" // present only on the finish marker
	// readCount bounds the entries one XRANGE or XREAD returns, so a long
	// log is replayed in slices instead of one large reply.
	readCount = 256
)

// Redis is a Broker on Redis Streams and pub/sub, shared by every instance
// that uses the same Redis and prefix.
//
// A follower holds no connection while it waits (see Follow): one
// subscription per broker wakes them all. Close ends that subscription.
type Redis struct {
	client    *redis.Client
	prefix    string
	retention time.Duration
	opts      options

	// The followers of this process, woken by one subscription.
	watchOnce sync.Once
	watchMu   sync.Mutex
	watchers  map[uuid.UUID]map[chan struct{}]struct{}
	pubsub    *redis.PubSub // nil until the first Follow
}

// Close ends the subscription that wakes followers; followers still
// running fall back to polling. It does not close the client.
func (r *Redis) Close() error {
	r.watchMu.Lock()
	defer r.watchMu.Unlock()
	if r.pubsub == nil {
		return nil
	}
	return r.pubsub.Close()
}

var _ Broker = (*Redis)(nil)

// NewRedis returns a Broker that keeps logs in client's Redis under keys
// starting with prefix and expires them retention after Finish. Instances
// see each other's logs and stops only if they use the same prefix. It
// panics if retention is not positive.
func NewRedis(client *redis.Client, prefix string, retention time.Duration, opts ...Option) *Redis {
	if retention <= 0 {
		panic("broker: retention must be positive")
	}
	return &Redis{client: client, prefix: prefix, retention: retention, opts: newOptions(opts), watchers: map[uuid.UUID]map[chan struct{}]struct{}{}}
}

func (r *Redis) logKey(generationID uuid.UUID) string {
	return r.prefix + "log:" + generationID.String()
}

func (r *Redis) stopChannel() string { return r.prefix + "stop" }

func entryID(seq uint64) string { return "0-" + strconv.FormatUint(seq, 10) }

// Append implements Broker in one round trip, however many events (see
// Write).
func (r *Redis) Append(ctx context.Context, generationID uuid.UUID, evs ...Event) error {
	return r.Write(ctx, []Write{{GenerationID: generationID, Events: evs}})[0]
}

// Finish implements Broker in one round trip.
func (r *Redis) Finish(ctx context.Context, generationID uuid.UUID) error {
	return r.Write(ctx, []Write{{GenerationID: generationID, Finish: true}})[0]
}

// Write implements Broker in one round trip, however many writes and
// events: every XADD, PEXPIRE and PUBLISH goes in one pipeline, and each
// write's outcome is read from its own commands. The expiry is pushed back
// on every append so that the log of a generation whose instance crashes
// expires maxGeneration+retention after its last event, however long the
// generation ran; a finish sets it to the retention.
func (r *Redis) Write(ctx context.Context, writes []Write) []error {
	errs := make([]error, len(writes))
	// spans[i] is the range of write i's commands in the pipeline.
	spans := make([][2]int, len(writes))
	queued := 0
	cmds, _ := r.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, w := range writes {
			evs := w.Events
			for _, ev := range evs {
				if ev.Seq < 1 {
					errs[i] = fmt.Errorf("%w: seq %d is not positive", ErrSequence, ev.Seq)
					evs = nil
					break
				}
			}
			if len(evs) == 0 && !w.Finish {
				spans[i] = [2]int{queued, queued}
				continue
			}
			key := r.logKey(w.GenerationID)
			first := queued
			for _, ev := range evs {
				pipe.XAdd(ctx, &redis.XAddArgs{
					Stream: key,
					ID:     entryID(uint64(ev.Seq)),
					Values: []any{fieldData, ev.Data},
				})
			}
			ttl := r.opts.maxGeneration + r.retention
			if w.Finish {
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{fieldFinish, "1"}})
				ttl = r.retention
			}
			pipe.PExpire(ctx, key, ttl)
			pipe.Publish(ctx, r.appendedChannel(w.GenerationID), "")
			queued = pipe.Len()
			spans[i] = [2]int{first, queued}
		}
		return nil
	})
	for i, w := range writes {
		if errs[i] != nil {
			continue
		}
		for j := spans[i][0]; j < spans[i][1] && j < len(cmds); j++ {
			err := cmds[j].Err()
			if err == nil {
				continue
			}
			switch {
			case j-spans[i][0] < len(w.Events) && strings.Contains(err.Error(), "equal or smaller than the target stream top item"):
				// Redis's wording is the only way to tell this refusal apart.
				errs[i] = fmt.Errorf("%w: append %d to %s", ErrSequence, w.Events[0].Seq, w.GenerationID)
			case len(w.Events) > 0:
				errs[i] = fmt.Errorf("broker: append %d to %s: %w", w.Events[0].Seq, w.GenerationID, err)
			default:
				errs[i] = fmt.Errorf("broker: finish %s: %w", w.GenerationID, err)
			}
			break
		}
	}
	return errs
}

// Follow implements Broker. It checks that the log exists and reads the
// first slice of it in one round trip. Then it waits without holding a
// connection: Append and Finish publish on the generation's own channel,
// which the broker's one subscription joins while a follower of that
// generation waits here, and a follower reads (XRANGE, one round trip)
// only when woken, or every poll interval in case an announcement was
// lost. A follower whose client left
// costs nothing once ctx ends, and followers can never take the pool
// connections live answers write with.
func (r *Redis) Follow(ctx context.Context, generationID uuid.UUID, afterSeq int64) (<-chan Event, func() error, error) {
	key := r.logKey(generationID)
	afterSeq = max(afterSeq, 0)
	lastID := entryID(uint64(afterSeq))
	// Listen before the first read, so an append between that read and
	// the first wait still wakes the follower.
	wake, unwatch := r.watch(generationID)
	var exists *redis.IntCmd
	var first *redis.XMessageSliceCmd
	_, err := r.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		exists = pipe.Exists(ctx, key)
		first = pipe.XRangeN(ctx, key, entryID(uint64(afterSeq)+1), "+", readCount)
		return nil
	})
	if err != nil {
		unwatch()
		return nil, nil, fmt.Errorf("broker: follow %s: %w", generationID, err)
	}
	if exists.Val() == 0 {
		unwatch()
		return nil, nil, ErrNotFound
	}
	out := make(chan Event)
	result := new(outcome)
	go func() {
		defer close(out)
		defer unwatch()
		result.set(r.read(ctx, key, lastID, first.Val(), wake, out))
	}()
	return out, result.get, nil
}

// read sends the events of msgs and of everything after them to out
// until the finish marker, and returns why it stopped: nil at the marker.
func (r *Redis) read(ctx context.Context, key, lastID string, msgs []redis.XMessage, wake <-chan struct{}, out chan<- Event) error {
	// Redis keeps its own time, so the poll runs on the system clock.
	poll := time.NewTicker(r.opts.block)
	defer poll.Stop()
	for {
		for _, msg := range msgs {
			lastID = msg.ID
			if _, ok := msg.Values[fieldFinish]; ok {
				return nil
			}
			ev, err := decode(msg)
			if err != nil {
				return fmt.Errorf("broker: read %s: %w", key, err)
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if len(msgs) == readCount {
			// More may be there already: read on without waiting.
		} else {
			select {
			case <-wake:
			case <-poll.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var exists *redis.IntCmd
		var next *redis.XMessageSliceCmd
		_, err := r.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			exists = pipe.Exists(ctx, key)
			next = pipe.XRangeN(ctx, key, "("+lastID, "+", readCount)
			return nil
		})
		if err != nil {
			return r.readErr(ctx, key, err)
		}
		if exists.Val() == 0 {
			// The log expired while followed: it will never finish.
			return ErrNotFound
		}
		msgs = next.Val()
	}
}

// appendedChannel is where Append and Finish announce that a
// generation's log grew. One channel per generation: an instance hears
// only of the answers its own clients follow.
func (r *Redis) appendedChannel(generationID uuid.UUID) string {
	return r.prefix + "appended:" + generationID.String()
}

// watch registers a follower of generationID: the returned channel gets a
// signal (coalesced) whenever the log may have grown. The first follower
// of a generation on this instance subscribes to its channel, the last one
// to leave unsubscribes. unwatch ends it.
func (r *Redis) watch(generationID uuid.UUID) (<-chan struct{}, func()) {
	r.watchOnce.Do(r.startWatcher)
	w := make(chan struct{}, 1)
	r.watchMu.Lock()
	set := r.watchers[generationID]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		r.watchers[generationID] = set
		// A failed subscribe is left to the follower's poll.
		_ = r.pubsub.Subscribe(context.Background(), r.appendedChannel(generationID))
	}
	set[w] = struct{}{}
	r.watchMu.Unlock()
	return w, func() {
		r.watchMu.Lock()
		defer r.watchMu.Unlock()
		delete(set, w)
		if len(set) == 0 && r.watchers[generationID] != nil {
			delete(r.watchers, generationID)
			_ = r.pubsub.Unsubscribe(context.Background(), r.appendedChannel(generationID))
		}
	}
}

// startWatcher opens the subscription followers are woken by, for the life
// of the broker (see Close), and wakes the followers of each generation
// announced on it. go-redis resubscribes after a lost connection;
// announcements sent meanwhile are lost, which the followers' poll covers.
func (r *Redis) startWatcher() {
	pubsub := r.client.Subscribe(context.Background())
	r.watchMu.Lock()
	r.pubsub = pubsub
	r.watchMu.Unlock()
	prefix := r.prefix + "appended:"
	go func() {
		for msg := range pubsub.Channel() {
			generationID, err := uuid.Parse(strings.TrimPrefix(msg.Channel, prefix))
			if err != nil {
				continue
			}
			r.watchMu.Lock()
			for w := range r.watchers[generationID] {
				select {
				case w <- struct{}{}:
				default: // already signalled
				}
			}
			r.watchMu.Unlock()
		}
	}()
}

// readErr prefers ctx's error: a read cut short by the caller is not a
// Redis failure.
func (r *Redis) readErr(ctx context.Context, key string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("broker: read %s: %w", key, err)
}

func decode(msg redis.XMessage) (Event, error) {
	seqText, ok := strings.CutPrefix(msg.ID, "0-")
	if !ok {
		return Event{}, fmt.Errorf("entry %s is neither an event nor the finish marker", msg.ID)
	}
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if err != nil {
		return Event{}, fmt.Errorf("entry %s: %w", msg.ID, err)
	}
	data, ok := msg.Values[fieldData].(string)
	if !ok {
		return Event{}, fmt.Errorf("entry %s has no data", msg.ID)
	}
	return Event{Seq: seq, Data: []byte(data)}, nil
}

// Stop implements Broker by publishing the id to every instance; the one
// that runs the generation acts on it.
func (r *Redis) Stop(ctx context.Context, generationID uuid.UUID) error {
	if err := r.client.Publish(ctx, r.stopChannel(), generationID.String()).Err(); err != nil {
		return fmt.Errorf("broker: stop %s: %w", generationID, err)
	}
	return nil
}

// Stops implements Broker. It returns once Redis has confirmed the
// subscription, so a Stop made after it returns is delivered. The client
// resubscribes by itself after a lost connection.
func (r *Redis) Stops(ctx context.Context) (<-chan uuid.UUID, error) {
	pubsub := r.client.Subscribe(ctx, r.stopChannel())
	if _, err := pubsub.Receive(ctx); err != nil {
		_ = pubsub.Close()
		return nil, fmt.Errorf("broker: subscribe to stops: %w", err)
	}
	messages := pubsub.Channel()
	out := make(chan uuid.UUID)
	go func() {
		defer close(out)
		defer pubsub.Close()
		for {
			select {
			case msg, ok := <-messages:
				if !ok {
					return
				}
				generationID, err := uuid.Parse(msg.Payload)
				if err != nil {
					// Not ours to act on; only Stop publishes here.
					continue
				}
				select {
				case out <- generationID:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
