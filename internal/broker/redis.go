package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
// Each Follow holds a connection of the client's pool while it waits for
// events, so the pool must be larger than the number of streams an
// instance serves at once; NewClient sizes it for that.
type Redis struct {
	client    *redis.Client
	prefix    string
	retention time.Duration
	opts      options
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
	return &Redis{client: client, prefix: prefix, retention: retention, opts: newOptions(opts)}
}

func (r *Redis) logKey(generationID uuid.UUID) string {
	return r.prefix + "log:" + generationID.String()
}

func (r *Redis) stopChannel() string { return r.prefix + "stop" }

func entryID(seq uint64) string { return "0-" + strconv.FormatUint(seq, 10) }

// Append implements Broker in one round trip, however many events: the
// XADDs and one PEXPIRE go in one pipeline. The expiry is pushed back on
// every append so that the log of a generation whose instance crashes
// expires maxGeneration+retention after its last event, however long the
// generation ran.
func (r *Redis) Append(ctx context.Context, generationID uuid.UUID, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	for _, ev := range evs {
		if ev.Seq < 1 {
			return fmt.Errorf("%w: seq %d is not positive", ErrSequence, ev.Seq)
		}
	}
	key := r.logKey(generationID)
	_, err := r.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, ev := range evs {
			pipe.XAdd(ctx, &redis.XAddArgs{
				Stream: key,
				ID:     entryID(uint64(ev.Seq)),
				Values: []any{fieldData, ev.Data},
			})
		}
		pipe.PExpire(ctx, key, r.opts.maxGeneration+r.retention)
		return nil
	})
	if err != nil {
		// Redis's wording is the only way to tell this refusal apart.
		if strings.Contains(err.Error(), "equal or smaller than the target stream top item") {
			return fmt.Errorf("%w: append %d to %s", ErrSequence, evs[0].Seq, generationID)
		}
		return fmt.Errorf("broker: append %d to %s: %w", evs[0].Seq, generationID, err)
	}
	return nil
}

// Finish implements Broker in one round trip.
func (r *Redis) Finish(ctx context.Context, generationID uuid.UUID) error {
	key := r.logKey(generationID)
	_, err := r.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{fieldFinish, "1"}})
		pipe.PExpire(ctx, key, r.retention)
		return nil
	})
	if err != nil {
		return fmt.Errorf("broker: finish %s: %w", generationID, err)
	}
	return nil
}

// Follow implements Broker. It checks that the log exists and reads the
// first slice of it in one round trip, then waits for more with XREAD
// BLOCK, at most the block time at a time.
func (r *Redis) Follow(ctx context.Context, generationID uuid.UUID, afterSeq int64) (<-chan Event, func() error, error) {
	key := r.logKey(generationID)
	afterSeq = max(afterSeq, 0)
	lastID := entryID(uint64(afterSeq))
	var exists *redis.IntCmd
	var first *redis.XMessageSliceCmd
	_, err := r.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		exists = pipe.Exists(ctx, key)
		first = pipe.XRangeN(ctx, key, entryID(uint64(afterSeq)+1), "+", readCount)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("broker: follow %s: %w", generationID, err)
	}
	if exists.Val() == 0 {
		return nil, nil, ErrNotFound
	}

	// The reader may sit in XREAD for the block time after ctx ends, since
	// go-redis does not interrupt a blocked read on cancel. A separate
	// forwarder closes the channel as soon as ctx ends, so callers never
	// wait for that.
	events := make(chan Event)
	var readErr error
	go func() {
		defer close(events)
		readErr = r.read(ctx, key, lastID, first.Val(), events)
	}()

	out := make(chan Event)
	result := new(outcome)
	go func() {
		defer close(out)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					// The close of events orders the write of readErr
					// before this read.
					result.set(readErr)
					return
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					result.set(ctx.Err())
					return
				}
			case <-ctx.Done():
				result.set(ctx.Err())
				return
			}
		}
	}()
	return out, result.get, nil
}

// read sends the events of msgs and of everything after them to events
// until the finish marker, and returns why it stopped: nil at the marker.
func (r *Redis) read(ctx context.Context, key, lastID string, msgs []redis.XMessage, events chan<- Event) error {
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
			case events <- ev:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		streams, err := r.client.XRead(ctx, &redis.XReadArgs{
			Streams: []string{key, lastID},
			Count:   readCount,
			Block:   r.opts.block,
		}).Result()
		switch {
		case errors.Is(err, redis.Nil):
			// XREAD waits on a missing key without complaint, so a log
			// that expired while followed is only noticed here.
			n, err := r.client.Exists(ctx, key).Result()
			if err != nil {
				return r.readErr(ctx, key, err)
			}
			if n == 0 {
				return ErrNotFound
			}
			msgs = nil
		case err != nil:
			return r.readErr(ctx, key, err)
		case len(streams) == 0:
			msgs = nil
		default:
			msgs = streams[0].Messages
		}
	}
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
