package agent

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Task asks for one attempt of one step of a run. Tasks are small and
// self-describing, so any queue can carry them as a job's arguments or a
// message's body; everything else a step needs is read from the database
// when it runs.
type Task struct {
	RunID uuid.UUID `json:"run_id"`
	// Step is the step's index in the run (0 = plan ... 4 = summarize).
	Step int `json:"step"`
	// Attempt is the step's attempt this task was queued for, from 1. A
	// task for an older attempt, or for a step that has ended, is stale:
	// its delivery is acknowledged and runs nothing.
	Attempt int `json:"attempt"`
	// Requeue counts the times the sweep queued the step again because
	// nothing was working on it (Runner.Sweep); it makes the task new to
	// queues that de-duplicate.
	Requeue int `json:"requeue,omitempty"`
}

// DedupKey names the task uniquely, for queues that de-duplicate
// deliveries ("<run>_<step>_<attempt>[_r<requeue>]": QStash refuses ":"
// in one).
func (t Task) DedupKey() string {
	key := t.RunID.String() + "_" + strconv.Itoa(t.Step) + "_" + strconv.Itoa(t.Attempt)
	if t.Requeue > 0 {
		key += "_r" + strconv.Itoa(t.Requeue)
	}
	return key
}

// Handler runs the step a task names; the queues call it for every
// delivery. It returns nil when the delivery is done with (the step ran,
// or it had already ended, or the task was stale), a *BusyError when
// another delivery holds the step's lease (deliver again after
// RetryAfter), or another error when the outcome could not be saved (the
// queue delivers again with its own backoff).
type Handler func(ctx context.Context, t Task) error

// BusyError says a step is being run by another delivery right now.
type BusyError struct{ RetryAfter time.Duration }

func (e *BusyError) Error() string { return "the step is being run by another delivery" }

// IsBusy reports whether err is a *BusyError and returns it.
func IsBusy(err error) (*BusyError, bool) {
	var b *BusyError
	ok := errors.As(err, &b)
	return b, ok
}
