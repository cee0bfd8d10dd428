package chat

import (
	"context"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
)

// Beside the stream: about once per CheckpointInterval, what every answer
// running on this instance has so far is saved in one statement for all of
// them. Database writes per answer are one per interval, never one per
// token, and per instance they stay one per interval however many answers
// run. An answer the database says has ended elsewhere (a stop that reached
// only the database, or a deletion) is canceled here: the database is the
// stop signal of last resort.

// startCheckpoints starts the checkpoint loop; it runs until shutdown. The
// ticker is made here, before the first generation launches, so a test's
// fake clock sees it.
func (g *Generator) startCheckpoints() {
	ticker := g.clock.NewTicker(g.cfg.CheckpointInterval)
	go func() {
		defer ticker.Stop()
		for {
			select {
			case <-g.base.Done():
				return
			case <-ticker.C():
			}
			g.checkpointRunning()
		}
	}()
}

// checkpointRunning saves the text of every running answer that changed
// since its last checkpoint, and asks of the others (a silent model, a
// tool running) only whether they still stream, in the same statement.
func (g *Generator) checkpointRunning() {
	var batch []Checkpoint
	var gens []*generation
	for _, gen := range g.snapshot() {
		gen.mu.Lock()
		if gen.text.Len() != gen.saved {
			batch = append(batch, Checkpoint{MessageID: gen.messageID, Content: gen.text.String()})
		} else {
			batch = append(batch, Checkpoint{MessageID: gen.messageID, Unchanged: true})
		}
		gens = append(gens, gen)
		gen.mu.Unlock()
	}
	if len(batch) == 0 {
		return
	}
	streaming, unsaved, err := g.checkpoint(batch)
	if err != nil {
		g.log.Warn("checkpoint failed", "answers", len(batch), "err", err)
		return
	}
	still := make(map[uuid.UUID]bool, len(streaming))
	for _, id := range streaming {
		still[id] = true
	}
	for i, gen := range gens {
		switch {
		case unsaved[gen.messageID]:
			// Not written: tried again at the next tick.
		case !still[gen.messageID]:
			gen.cancel(errEndedElsewhere)
		case !batch[i].Unchanged:
			gen.mu.Lock()
			gen.saved = len(batch[i].Content)
			gen.mu.Unlock()
		}
	}
}

// checkpoint writes a batch in one statement and returns the ids still
// streaming. If the statement fails on the data (one answer the database
// refuses), it writes the answers one by one, so that answer cannot keep
// every other answer of the instance from being saved; the ones that still
// fail come back in unsaved. If the database itself is down or slow, it
// does not: one statement per answer would only add load to it.
func (g *Generator) checkpoint(batch []Checkpoint) (streaming []uuid.UUID, unsaved map[uuid.UUID]bool, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(g.base), finalSaveTimeout)
	defer cancel()
	streaming, err = g.store.CheckpointMessages(ctx, batch)
	if err == nil || len(batch) == 1 || unreachable(err) {
		return streaming, nil, err
	}
	streaming, unsaved = streaming[:0], map[uuid.UUID]bool{}
	var failed error
	for _, c := range batch {
		ids, err := g.store.CheckpointMessages(ctx, []Checkpoint{c})
		if err != nil {
			failed = err
			unsaved[c.MessageID] = true
			continue
		}
		streaming = append(streaming, ids...)
	}
	if failed != nil {
		g.log.Warn("checkpoint of an answer failed", "answers", len(unsaved), "err", failed)
	}
	return streaming, unsaved, nil
}

// unreachable reports an error of the database itself rather than of the
// data sent to it.
func unreachable(err error) bool {
	switch apperr.CodeOf(err) {
	case apperr.Unavailable, apperr.DeadlineExceeded, apperr.Canceled:
		return true
	}
	return false
}
