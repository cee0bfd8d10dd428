package chat

import (
	"context"
	"time"
)

// SweepStale marks answers whose instance died mid-generation as
// interrupted, once they have gone without a checkpoint for longer than
// the longest generation (plus a minute of slack), every SweepInterval
// until ctx ends. Every instance
// sweeps; the statement is idempotent, so several sweeping at once is
// harmless. The first sweep runs at once, so a deployment that restarts
// cleans up without waiting.
func (g *Generator) SweepStale(ctx context.Context) {
	ticker := g.clock.NewTicker(g.cfg.SweepInterval)
	defer ticker.Stop()
	for {
		g.sweepOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		}
	}
}

// staleAfter is how old a streaming answer must be to be swept.
func (g *Generator) staleAfter() time.Duration { return g.cfg.MaxDuration + time.Minute }

func (g *Generator) sweepOnce(ctx context.Context) {
	n, err := g.store.InterruptStale(ctx, g.clock.Now().Add(-g.staleAfter()))
	if err != nil && ctx.Err() == nil {
		g.log.Warn("stale answer sweep failed", "err", err)
	}
	if n > 0 {
		g.log.Warn("marked abandoned answers interrupted", "count", n)
	}
}
