package chat

import (
	"context"

	"github.com/google/uuid"
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
// since its last checkpoint.
func (g *Generator) checkpointRunning() {
	var batch []Checkpoint
	var changed []*generation
	for _, gen := range g.snapshot() {
		gen.mu.Lock()
		if gen.text.Len() != gen.saved {
			batch = append(batch, Checkpoint{MessageID: gen.messageID, Content: gen.text.String()})
			changed = append(changed, gen)
		}
		gen.mu.Unlock()
	}
	if len(batch) == 0 {
		return
	}
	streaming, err := g.checkpoint(batch)
	if err != nil {
		g.log.Warn("checkpoint failed", "answers", len(batch), "err", err)
		return
	}
	still := make(map[uuid.UUID]bool, len(streaming))
	for _, id := range streaming {
		still[id] = true
	}
	for i, gen := range changed {
		if !still[gen.messageID] {
			gen.cancel(errEndedElsewhere)
			continue
		}
		gen.mu.Lock()
		gen.saved = len(batch[i].Content)
		gen.mu.Unlock()
	}
}

// checkpoint writes a batch in one statement; if that fails, it writes the
// answers one by one, so one answer the database refuses cannot keep every
// other answer of the instance from being saved.
func (g *Generator) checkpoint(batch []Checkpoint) ([]uuid.UUID, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(g.base), finalSaveTimeout)
	defer cancel()
	streaming, err := g.store.CheckpointMessages(ctx, batch)
	if err == nil || len(batch) == 1 {
		return streaming, err
	}
	streaming = streaming[:0]
	var failed error
	for _, c := range batch {
		ids, err := g.store.CheckpointMessages(ctx, []Checkpoint{c})
		if err != nil {
			failed = err
			// Unknown, not ended: keep the answer going.
			streaming = append(streaming, c.MessageID)
			continue
		}
		streaming = append(streaming, ids...)
	}
	if failed != nil {
		g.log.Warn("checkpoint of one answer failed", "err", failed)
	}
	return streaming, nil
}
