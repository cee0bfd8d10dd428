package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/clock"
	"github.com/parleyhq/parley/internal/pagetoken"
	"github.com/parleyhq/parley/internal/plan"
)

// Limits on requests.
const (
	MaxGoalRunes       = 4000
	MaxRequestIDRunes  = 128
	DefaultPageSize    = 20
	MaxPageSize        = 100
	DefaultMaxActive   = 3
	watchPageSize      = 500
	watchPollFallback  = time.Second
	defaultWatchBuffer = 64
)

// Tool names a run may allow (see tools.go for what each does).
const (
	ToolSearch         = "search"
	ToolReadArtifact   = "read_artifact"
	ToolCreateArtifact = "create_artifact"
	ToolUpdateArtifact = "update_artifact"
)

// AllTools are the tools a run may use, in a stable order.
var AllTools = []string{ToolSearch, ToolReadArtifact, ToolCreateArtifact, ToolUpdateArtifact}

// Models resolves a run's model; *chat.Models is one.
type Models interface {
	Resolve(field string, names ...string) (string, chat.Provider, error)
}

// Waker wakes watchers of a run when its events change; Hub is one.
type Waker interface {
	Subscribe(runID uuid.UUID) (<-chan struct{}, func())
}

// Service applies the agent rules for the RPCs: starting, reading,
// listing, canceling and watching runs. Steps run in a Runner.
type Service struct {
	store     Store
	models    Models
	plans     plan.Resolver
	events    Waker
	runner    *Runner
	maxActive int
	clock     clock.Clock

	mu          sync.Mutex
	watchers    map[uuid.UUID]int // by user, on this instance
	maxWatchers int
}

// ServiceConfig configures a Service.
type ServiceConfig struct {
	Plans plan.Resolver // nil: no plan rules
	// MaxActive caps a user's runs in progress (DefaultMaxActive when 0).
	MaxActive int
	// MaxWatchersPerUser caps a user's WatchRun streams on one instance
	// (DefaultMaxWatchersPerUser when 0).
	MaxWatchersPerUser int
	Clock              clock.Clock
}

// DefaultMaxWatchersPerUser is ServiceConfig.MaxWatchersPerUser's default.
const DefaultMaxWatchersPerUser = 20

// NewService returns a Service. runner, when it runs on this instance,
// cancels its own steps at once; events wakes watchers.
func NewService(store Store, models Models, events Waker, runner *Runner, cfg ServiceConfig) *Service {
	if cfg.MaxActive <= 0 {
		cfg.MaxActive = DefaultMaxActive
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.MaxWatchersPerUser <= 0 {
		cfg.MaxWatchersPerUser = DefaultMaxWatchersPerUser
	}
	return &Service{
		store: store, models: models, plans: cfg.Plans, events: events, runner: runner, maxActive: cfg.MaxActive, clock: cfg.Clock,
		watchers: map[uuid.UUID]int{}, maxWatchers: cfg.MaxWatchersPerUser,
	}
}

// StartRequest is a run as a client asks for it.
type StartRequest struct {
	Goal           string
	ConversationID uuid.UUID
	Tools          []string // empty: every tool
	Model          string
	RequestID      string
}

// Start validates r, saves the run and queues its first step. It answers
// apperr Invalid naming the field for bad input, NotFound for a
// conversation that is not the user's, PermissionDenied for a model the
// plan excludes, and ResourceExhausted when too many runs are in progress.
func (s *Service) Start(ctx context.Context, userID uuid.UUID, r StartRequest) (Run, error) {
	goal := strings.TrimSpace(r.Goal)
	switch {
	case goal == "":
		return Run{}, apperr.InvalidField("goal", "is required: say what the agent should work on")
	case !utf8.ValidString(goal) || strings.ContainsRune(goal, 0):
		return Run{}, apperr.InvalidField("goal", "must be UTF-8 text without NUL characters")
	case utf8.RuneCountInString(goal) > MaxGoalRunes:
		return Run{}, apperr.InvalidField("goal", "is %d characters; at most %d are allowed", utf8.RuneCountInString(goal), MaxGoalRunes)
	case utf8.RuneCountInString(r.RequestID) > MaxRequestIDRunes:
		return Run{}, apperr.InvalidField("request_id", "is longer than %d characters", MaxRequestIDRunes)
	}
	tools, err := toolSelection(r.Tools)
	if err != nil {
		return Run{}, err
	}
	model, _, err := s.models.Resolve("model", r.Model)
	if err != nil {
		return Run{}, err
	}
	var quota int64
	if s.plans != nil {
		pl, err := s.plans.PlanOf(ctx, userID)
		if err != nil {
			return Run{}, err
		}
		if !pl.AllowsModel(model) {
			return Run{}, apperr.New(apperr.PermissionDenied, "model %q is not included in the %s plan", model, pl.Name)
		}
		quota = max(pl.MonthlyTokens, 0)
	}
	id := uuid.New()
	now := s.clock.Now()
	run, _, err := s.store.CreateRun(ctx, NewRun{
		ID: id, UserID: userID, ConversationID: r.ConversationID, Goal: goal, Model: model,
		Tools: tools, QuotaTokens: quota, Month: monthOf(now), RequestID: r.RequestID,
	}, s.maxActive, Task{RunID: id, Step: 0, Attempt: 1})
	switch {
	case errors.Is(err, ErrTooManyRuns):
		e := apperr.New(apperr.ResourceExhausted, "at most %d agent runs can be in progress at once; wait for one to end or cancel it", s.maxActive)
		e.RetryAfter = 10
		return Run{}, e
	case errors.Is(err, ErrQuotaExceeded):
		reset := monthOf(now).AddDate(0, 1, 0)
		e := apperr.New(apperr.ResourceExhausted, "the monthly quota of %d tokens is used up; it resets at %s", quota, reset.Format(time.RFC3339))
		e.RetryAfter = int(reset.Sub(now).Seconds()) + 1
		return Run{}, e
	}
	return run, err
}

// toolSelection checks a run's tools and puts them in AllTools' order.
func toolSelection(names []string) ([]string, error) {
	if len(names) == 0 {
		return slices.Clone(AllTools), nil
	}
	out := make([]string, 0, len(AllTools))
	for _, n := range names {
		if !slices.Contains(AllTools, n) {
			return nil, apperr.InvalidField("tools", "%q is not a tool (tools: %s)", n, strings.Join(AllTools, ", "))
		}
	}
	for _, t := range AllTools {
		if slices.Contains(names, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// Get returns a run with its steps.
func (s *Service) Get(ctx context.Context, userID, runID uuid.UUID) (Run, error) {
	if runID == uuid.Nil {
		return Run{}, apperr.InvalidField("run_id", "is required")
	}
	return s.store.GetRun(ctx, userID, runID)
}

// List returns a page of the user's runs, newest first, and the token of
// the next page ("" on the last).
func (s *Service) List(ctx context.Context, userID uuid.UUID, pageSize int, pageToken string) ([]Run, string, error) {
	switch {
	case pageSize < 0 || pageSize > MaxPageSize:
		return nil, "", apperr.InvalidField("page_size", "must be between 0 and %d", MaxPageSize)
	case pageSize == 0:
		pageSize = DefaultPageSize
	}
	raw, err := pagetoken.Decode("agent_runs", userID[:], pageToken, 24)
	if err != nil {
		return nil, "", err
	}
	var after *Cursor
	if raw != nil {
		after = &Cursor{Time: time.UnixMicro(int64(binary.BigEndian.Uint64(raw[:8]))).UTC()}
		copy(after.ID[:], raw[8:])
	}
	runs, err := s.store.ListRuns(ctx, userID, after, pageSize+1)
	if err != nil || len(runs) <= pageSize {
		return runs, "", err
	}
	runs = runs[:pageSize]
	last := runs[pageSize-1]
	cursor := binary.BigEndian.AppendUint64(nil, uint64(last.CreateTime.UnixMicro()))
	return runs, pagetoken.Encode("agent_runs", userID[:], append(cursor, last.ID[:]...)), nil
}

// Cancel cancels a run (see Store.CancelRun) and returns it.
func (s *Service) Cancel(ctx context.Context, userID, runID uuid.UUID) (Run, error) {
	if runID == uuid.Nil {
		return Run{}, apperr.InvalidField("run_id", "is required")
	}
	run, err := s.store.CancelRun(ctx, userID, runID)
	if err != nil {
		return Run{}, err
	}
	if s.runner != nil {
		// A step of the run on this instance stops now, not at its next
		// heartbeat.
		s.runner.cancelLocal(runID)
	}
	return run, nil
}

// Watch sends a run's events after afterSeq to send, those saved already
// and then the new ones as they are saved, until the run's last event has
// been sent (then it returns nil), ctx ends, or send fails.
func (s *Service) Watch(ctx context.Context, userID, runID uuid.UUID, afterSeq int64, send func(Event) error) error {
	if runID == uuid.Nil {
		return apperr.InvalidField("run_id", "is required")
	}
	if afterSeq < 0 {
		return apperr.InvalidField("after_seq", "must not be negative")
	}
	// Subscribe before the first read, so no event saved in between is
	// missed.
	wake, unsubscribe := s.events.Subscribe(runID)
	defer unsubscribe()
	run, err := s.store.GetRun(ctx, userID, runID)
	if err != nil {
		return err
	}
	if afterSeq > run.LastSeq {
		return apperr.InvalidField("after_seq", "is %d, but the run's latest event is %d", afterSeq, run.LastSeq)
	}
	if run.Status.Ended() && afterSeq == run.LastSeq {
		return nil // the watcher has seen the end already
	}
	release, err := s.admitWatcher(userID)
	if err != nil {
		return err
	}
	defer release()
	poll := time.NewTicker(watchPollFallback)
	defer poll.Stop()
	for {
		evs, err := s.store.Events(ctx, userID, runID, afterSeq, watchPageSize)
		if err != nil {
			if ctx.Err() != nil {
				return apperr.Wrap(context.Cause(ctx), apperr.Canceled, "the watch ended")
			}
			return err
		}
		for _, ev := range evs {
			if err := send(ev); err != nil {
				return err
			}
			afterSeq = ev.Seq
			if ev.Kind.Terminal() {
				return nil
			}
		}
		if len(evs) == watchPageSize {
			continue
		}
		// Notifications are the fast path; the poll catches up when they
		// cannot be delivered (a database pooler that drops LISTEN).
		select {
		case <-ctx.Done():
			return apperr.Wrap(context.Cause(ctx), apperr.Canceled, "the watch ended")
		case <-wake:
		case <-poll.C:
		}
	}
}

// admitWatcher counts a watcher of userID against MaxWatchersPerUser and
// returns the function that uncounts it.
func (s *Service) admitWatcher(userID uuid.UUID) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watchers[userID] >= s.maxWatchers {
		e := apperr.New(apperr.ResourceExhausted, "at most %d runs can be watched at once per user; close a watch first", s.maxWatchers)
		e.RetryAfter = 5
		return nil, e
	}
	s.watchers[userID]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.watchers[userID]--; s.watchers[userID] <= 0 {
			delete(s.watchers, userID)
		}
	}, nil
}

// Hub fans notifications out to the watchers of each run on this
// instance. It is fed by the store's notifications (from every
// instance) and by this instance's own writes.
type Hub struct {
	mu   sync.Mutex
	subs map[uuid.UUID]map[chan struct{}]struct{}
}

// NewHub returns an empty Hub.
func NewHub() *Hub { return &Hub{subs: map[uuid.UUID]map[chan struct{}]struct{}{}} }

// Subscribe returns a channel that receives a value (coalesced) after
// each Notify of runID, and a function that ends the subscription.
func (h *Hub) Subscribe(runID uuid.UUID) (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[runID] == nil {
		h.subs[runID] = map[chan struct{}]struct{}{}
	}
	h.subs[runID][c] = struct{}{}
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		delete(h.subs[runID], c)
		if len(h.subs[runID]) == 0 {
			delete(h.subs, runID)
		}
		h.mu.Unlock()
	}
}

// Notify wakes runID's subscribers; it never blocks.
func (h *Hub) Notify(runID uuid.UUID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs[runID] {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Watchers counts the subscriptions, for tests and metrics.
func (h *Hub) Watchers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.subs {
		n += len(m)
	}
	return n
}
