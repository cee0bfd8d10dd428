package chat

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/clock"
	"github.com/parleyhq/parley/internal/plan"
)

// GeneratorConfig tunes generations.
type GeneratorConfig struct {
	// CheckpointInterval is how often a streaming answer is saved (1s).
	CheckpointInterval time.Duration
	// MaxDuration bounds one generation, even with no client watching (5m).
	MaxDuration time.Duration
	// ContextTokens is the prompt budget; older turns are dropped to fit (16000).
	ContextTokens int
	// MaxOutputTokens caps an answer; 0 leaves it to the provider.
	MaxOutputTokens int
	// Carry copies what belongs to the request that starts an answer onto
	// the answer's own context, which outlives the request and is not
	// derived from it: internal/app passes the request's trace span, so an
	// answer's model calls and saves are traced beneath its RPC. It must
	// keep run's cancellation and deadline; nil carries nothing.
	Carry func(request, run context.Context) context.Context
	// Titler writes titles for new conversations; nil disables titles.
	Titler Titler
	// Tools are the tools answers may call; nil offers none.
	Tools Toolbox
	// MaxToolRounds bounds the turns of one answer in which tools are
	// offered (4); the turn after them is offered none and ends in text.
	MaxToolRounds int
	// MaxToolResultBytes bounds what one tool call tells the model (8 KiB).
	MaxToolResultBytes int
	// StopWait bounds how long StopGeneration waits for the answer to be
	// saved by the instance that runs it (10s).
	StopWait time.Duration
	// Plans says what each user may spend; nil: no quota, every model.
	Plans plan.Resolver
	// Usage reads a user's token usage for the quota period holding a
	// time; the instance's budgets are read with it, in the background, to
	// decide when the model may be asked while the exchange is saved (see
	// overlap.go). Nil asks ahead only for users without a quota.
	Usage func(ctx context.Context, userID uuid.UUID, at time.Time) (TokenUsage, error)
	// MaxConcurrent is how many answers one user may have streaming at
	// once, across instances (3).
	MaxConcurrent int
	// OutputReserve is the answer length reserved against the quota before
	// the real usage is known (MaxOutputTokens, or 1000 when that is 0).
	OutputReserve int
	// MaxRunning caps the answers this instance writes at once, whoever
	// asks, so a burst cannot run it out of memory (1000); more answer
	// resource_exhausted with a retry hint.
	MaxRunning int
	// MaxDeltas caps the delta events of one answer, which are kept in
	// memory while it runs (16384); an answer that reaches it ends as if
	// the model hit its token limit (finish reason "length").
	MaxDeltas int
	// MaxFollowers caps the resumed streams (ResumeGeneration, retried
	// sends) this instance serves at once (1000), and MaxFollowersPerUser
	// those of one user (20); more answer resource_exhausted. Each holds an
	// open request; none holds a Redis connection while it waits.
	MaxFollowers, MaxFollowersPerUser int
	// SaveRetry is the first wait before the final save of an answer is
	// tried again after a failure (100ms); the waits double from there.
	SaveRetry time.Duration
	// SweepInterval is how often answers abandoned by a dead instance are
	// looked for (1m); see SweepStale.
	SweepInterval time.Duration
	// Clock tells the time of checkpoints, sweeps and quota periods; nil
	// is the system clock.
	Clock clock.Clock
	// Attachments checks and keeps the files sent with messages; nil
	// refuses messages that carry any.
	Attachments Attachments
	// VisionModels are the models that read images; the others refuse
	// messages with images (and answer regenerations of them without).
	VisionModels []string
	// Temperature is the sampling temperature answers are asked with; nil
	// leaves it to the provider.
	Temperature *float64
	// Cache keeps answers to deterministic requests (Temperature 0) for
	// reuse; nil caches nothing. See cache.go.
	Cache ResponseCache
	// CacheShared lets one user's cached answer serve every user who sends
	// the same request; by default the cache is per user.
	CacheShared bool
}

func (c *GeneratorConfig) defaults() {
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = time.Second
	}
	if c.MaxDuration <= 0 {
		c.MaxDuration = 5 * time.Minute
	}
	if c.ContextTokens <= 0 {
		c.ContextTokens = 16000
	}
	if c.StopWait <= 0 {
		c.StopWait = 10 * time.Second
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 3
	}
	if c.OutputReserve <= 0 {
		c.OutputReserve = c.MaxOutputTokens
		if c.OutputReserve <= 0 {
			c.OutputReserve = 1000
		}
	}
	if c.MaxToolRounds <= 0 {
		c.MaxToolRounds = 4
	}
	if c.MaxToolResultBytes <= 0 {
		c.MaxToolResultBytes = 8 << 10
	}
	if c.MaxRunning <= 0 {
		c.MaxRunning = 1000
	}
	if c.MaxDeltas <= 0 {
		c.MaxDeltas = 16384
	}
	if c.MaxFollowers <= 0 {
		c.MaxFollowers = 1000
	}
	if c.MaxFollowersPerUser <= 0 {
		c.MaxFollowersPerUser = 20
	}
	if c.SaveRetry <= 0 {
		c.SaveRetry = 100 * time.Millisecond
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = time.Minute
	}
	if c.Clock == nil {
		c.Clock = clock.Real()
	}
}

// Generator runs generations: it saves the exchange, asks the model,
// relays the answer to every follower and saves it, whatever the client
// does. A generation writes one assistant message: its generation id names
// the writing (events, stop, resume), its message id the saved row.
//
// The life of one answer, a file per stage: prepare.go (load the branch,
// pick the model), start.go (check the plan, save the exchange, launch),
// stream.go (model deltas to events and followers), checkpoint.go and
// mirror.go (beside the stream, for every answer of the instance at once:
// the database once a second, the shared event log every 50ms), finish.go (the ending and the final save),
// follow.go (resume from anywhere), stop.go, sweep.go (answers whose
// instance died).
type Generator struct {
	store  GenerationStore
	models *Models
	events EventLog
	log    *slog.Logger
	cfg    GeneratorConfig
	clock  clock.Clock

	// base is canceled on shutdown; every generation derives from it, never
	// from a request, so a client leaving does not stop its answer.
	base       context.Context
	cancelBase context.CancelCauseFunc

	// exit ends when Shutdown's own deadline does: no save may outlive
	// it, since the process is about to close its pool and exit.
	exit       context.Context
	exitCancel context.CancelFunc

	mu       sync.Mutex
	running  map[uuid.UUID]*generation // by generation id
	admitted int                       // running, plus starts admitted but not yet registered
	draining bool                      // set by Shutdown: no new generation starts
	wg       sync.WaitGroup

	// followers counts the resumed streams being served, in all and per user.
	followers       int
	followersByUser map[uuid.UUID]int

	checkpointsOnce sync.Once

	// The mirror (mirror.go): signals from generations with events to
	// write, whether its goroutine runs, and its wake-up.
	mirrorMu      sync.Mutex
	mirrorQueue   []mirrorSignal
	mirrorRunning bool
	mirrorWake    chan struct{}

	// budgets are the users' quota budgets this instance knows.
	budgets budgets
}

// NewGenerator returns a Generator. Call Listen to receive stop requests
// from other instances, SweepStale to mark abandoned answers, and Shutdown
// when the server stops. A nil log discards.
func NewGenerator(store GenerationStore, models *Models, events EventLog, log *slog.Logger, cfg GeneratorConfig) *Generator {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base, cancel := context.WithCancelCause(context.Background())
	exit, exitCancel := context.WithCancel(context.Background())
	return &Generator{
		exit: exit, exitCancel: exitCancel,
		store: store, models: models, events: events, log: log, cfg: cfg, clock: cfg.Clock,
		base: base, cancelBase: cancel, running: map[uuid.UUID]*generation{},
		followersByUser: map[uuid.UUID]int{}, mirrorWake: make(chan struct{}, 1),
	}
}

// Listen subscribes to stop requests from any instance until ctx ends.
func (g *Generator) Listen(ctx context.Context) error {
	stops, err := g.events.Stops(ctx)
	if err != nil {
		return err
	}
	go func() {
		for id := range stops {
			if gen := g.local(id); gen != nil {
				gen.stop()
			}
		}
	}()
	return nil
}

// errShutdown cancels generations when the server stops; they save what
// they have with status interrupted.
var errShutdown = errors.New("server shutting down")

// Shutdown refuses new generations, lets running ones finish until drain
// has passed, then interrupts the rest, which save their partial answers
// with status interrupted. It returns when every generation has saved, or
// when ctx ends.
func (g *Generator) Shutdown(ctx context.Context, drain time.Duration) error {
	g.mu.Lock()
	g.draining = true
	g.mu.Unlock()
	// Saves still running when ctx ends are cut: the sweep marks those
	// answers interrupted later, with their last checkpoint.
	stopExit := context.AfterFunc(ctx, g.exitCancel)
	defer stopExit()
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	timer := time.NewTimer(drain)
	defer timer.Stop()
	select {
	case <-done:
		g.cancelBase(errShutdown) // ends the background loops
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	g.cancelBase(errShutdown)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// local returns the generation if it runs on this instance.
func (g *Generator) local(generationID uuid.UUID) *generation {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running[generationID]
}

// admit takes a place for a generation about to start, before its
// exchange is saved: it refuses when Shutdown began or the instance runs
// MaxRunning answers. Every admit is followed by register or release.
// wg.Add happens here, under the lock Shutdown sets draining under, so
// Shutdown's wg.Wait never races a new generation.
func (g *Generator) admit() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.draining {
		return errDraining
	}
	if g.admitted >= g.cfg.MaxRunning {
		e := apperr.New(apperr.ResourceExhausted, "this server is writing as many answers as it can; retry in a second")
		e.RetryAfter = 1
		return e
	}
	g.admitted++
	g.wg.Add(1)
	return nil
}

// release gives back an admitted place whose generation never started.
func (g *Generator) release() {
	g.mu.Lock()
	g.admitted--
	g.mu.Unlock()
	g.wg.Done()
}

// register adds an admitted generation to the running ones.
func (g *Generator) register(gen *generation) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running[gen.id] = gen
}

// unregister removes a generation that has saved its answer.
func (g *Generator) unregister(gen *generation) {
	g.mu.Lock()
	delete(g.running, gen.id)
	g.admitted--
	g.mu.Unlock()
	g.wg.Done()
}

// snapshot returns the generations running now.
func (g *Generator) snapshot() []*generation {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*generation, 0, len(g.running))
	for _, gen := range g.running {
		out = append(out, gen)
	}
	return out
}

// addFollower takes a follower's place for userID until ctx ends (the
// request that follows is over). It answers resource_exhausted when the
// instance or the user has as many as allowed.
func (g *Generator) addFollower(ctx context.Context, userID uuid.UUID) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.followers >= g.cfg.MaxFollowers {
		e := apperr.New(apperr.ResourceExhausted, "this server follows as many answers as it can; retry in a second")
		e.RetryAfter = 1
		return e
	}
	if g.followersByUser[userID] >= g.cfg.MaxFollowersPerUser {
		e := apperr.New(apperr.ResourceExhausted, "at most %d answers can be followed at once; close a stream you no longer read", g.cfg.MaxFollowersPerUser)
		e.RetryAfter = 1
		return e
	}
	g.followers++
	g.followersByUser[userID]++
	context.AfterFunc(ctx, func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.followers--
		if g.followersByUser[userID]--; g.followersByUser[userID] <= 0 {
			delete(g.followersByUser, userID)
		}
	})
	return nil
}
