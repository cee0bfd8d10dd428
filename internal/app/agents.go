package app

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/artifact"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/qstash"
	"github.com/parleyhq/parley/internal/riverq"
	"github.com/parleyhq/parley/internal/search"
	"github.com/parleyhq/parley/internal/store"
	"github.com/parleyhq/parley/internal/telemetry"
)

// agentParts are the agent domain and the queue that delivers its steps:
// River in Postgres by default, or QStash's push delivery when
// QSTASH_TOKEN is set.
type agentParts struct {
	service *agent.Service
	runner  *agent.Runner
	hub     *agent.Hub
	river   *riverq.Queue // nil with QStash
	outbox  *store.Outbox // nil with River
	replays *store.QStashReplays
	tasks   map[string]http.Handler
	sweep   agent.SweepConfig
}

// buildAgents wires the agent domain to its store and queue.
func (a *App) buildAgents(opts Options, plans plan.Resolver, searcher *search.Service, artifacts *artifact.Service) (*agentParts, error) {
	cfg := a.cfg
	p := &agentParts{hub: agent.NewHub()}
	rc := agent.RunnerConfig{
		StepTimeout: cfg.AgentStepTimeout, MaxAttempts: cfg.AgentMaxAttempts, MaxOutputTokens: cfg.MaxOutputTokens,
		Clock: opts.Clock, Log: a.log,
	}
	if opts.Agent != nil {
		opts.Agent(&rc)
	}
	// The queue calls the runner, and the runner's store queues through
	// the queue: handle closes the loop once both exist.
	var handle agent.Handler = func(ctx context.Context, t agent.Task) error { return p.runner.Handle(ctx, t) }
	var tools agent.Tools = agent.NewToolbox(searcher, artifacts, a.log)
	if a.tracer != nil {
		handle, tools = telemetry.AgentStep(handle, a.tracer), telemetry.AgentTools(tools, a.tracer)
	}
	var sink store.TaskSink
	if cfg.QStash() {
		pub := qstash.NewPublisher(cfg.QStashURL, cfg.QStashToken)
		endpoint := cfg.PublicURL + qstash.AgentStepPath
		p.outbox = a.store.Outbox(qstash.Tasks{Publisher: pub, Destination: endpoint, Retries: qstash.DefaultRetries}, a.log)
		p.replays = a.store.QStashReplays()
		p.tasks = map[string]http.Handler{qstash.AgentStepPath: qstash.NewHandler(qstash.HandlerConfig{
			Receiver: qstash.NewReceiver(cfg.QStashCurrentSigningKey, cfg.QStashNextSigningKey),
			URL:      endpoint, Replays: p.replays, Deliver: qstash.TaskDeliverer(handle), Log: a.log,
		})}
		sink = p.outbox
	} else {
		workers := cfg.AgentWorkers
		if workers == 0 {
			workers = -1 // insert-only: this instance runs no steps
		}
		q, err := riverq.New(a.store.Pool(), handle, riverq.Config{
			Workers: workers, StepTimeout: rc.StepTimeout, RescueAfter: opts.RiverRescueAfter, MaxAttempts: 10, Log: a.log,
		})
		if err != nil {
			return nil, fmt.Errorf("agent queue: %w", err)
		}
		p.river, sink = q, q
	}
	agents := a.store.Agents(sink)
	p.runner = agent.NewRunner(agents, a.models, tools, p.hub.Notify, rc)
	p.service = agent.NewService(agents, a.models, p.hub, p.runner, agent.ServiceConfig{
		Plans: plans, MaxActive: cfg.AgentMaxActiveRuns, MaxWatchersPerUser: cfg.MaxFollowersPerUser, Clock: opts.Clock,
	})
	p.sweep = opts.AgentSweep
	return p, nil
}

// start runs the agent side until ctx ends (the start of shutdown): the
// notification listener, the sweep for stranded runs, and River's workers
// or the QStash outbox relay. The channel closes once all of it has
// stopped. Steps still running a quarter of the grace period after the
// shutdown began are given back (their events saved, their leases
// released) so that another instance runs them again at once: River
// delivers the job again without counting an attempt; QStash retries the
// delivery.
func (p *agentParts) start(a *App, ctx context.Context) <-chan struct{} {
	var wg sync.WaitGroup
	riverUp := make(chan bool, 1)
	if p.river != nil {
		go func() { riverUp <- p.startRiver(ctx, a) }()
	} else {
		riverUp <- false
	}
	wg.Go(func() { a.listenAgents(ctx) })
	wg.Go(func() { p.runner.Sweep(ctx, p.sweep) })
	if p.outbox != nil {
		wg.Go(func() { p.outbox.Relay(ctx, 30*time.Second, 10*time.Second) })
		wg.Go(func() { p.forgetReplays(ctx) })
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		quarter := a.cfg.ShutdownTimeout / 4
		if <-riverUp {
			// Running steps get a quarter of the grace period; then River
			// cancels them and they give themselves back.
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), quarter)
			if err := p.river.Stop(stopCtx); err != nil {
				a.log.Warn("agent queue did not stop cleanly", "err", err)
			}
			cancel()
		} else {
			time.Sleep(quarter)
		}
		p.runner.Interrupt()
		wg.Wait()
	}()
	return done
}

// startRiver starts River's workers, trying again with backoff while the
// database cannot be reached (River pings it first): the instance serves
// meanwhile, and the steps wait in the database. It reports whether River
// started before ctx ended.
func (p *agentParts) startRiver(ctx context.Context, a *App) bool {
	return a.keepTrying(ctx, "cannot start the agent queue; retrying", p.river.Start)
}

// forgetReplays deletes expired QStash message records every hour.
func (p *agentParts) forgetReplays(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
		p.replays.Forget(ctx) //nolint:errcheck // the next hour tries again
	}
}

// listenAgents routes the notifications of every instance (a run's new
// events, a run's cancel request, a user's plan change) to this
// instance's watchers, steps and plan cache, and
// keeps listening with backoff while the database cannot be reached;
// meanwhile watchers poll and steps see cancels at their next heartbeat.
func (a *App) listenAgents(ctx context.Context) {
	a.keepTrying(ctx, "cannot listen for agent notifications; retrying", func(ctx context.Context) error {
		// Plan changes notified while no connection listened were missed:
		// the plan cache starts over each time one does.
		listening := func() {
			if a.planCache != nil {
				a.planCache.ForgetAll()
			}
		}
		return a.store.ListenAgents(ctx, listening, func(kind byte, id uuid.UUID) {
			switch kind {
			case 'e':
				a.agents.hub.Notify(id)
			case 'c':
				a.agents.runner.CancelSignal(id)
				a.agents.hub.Notify(id)
			case 'p': // the id is a user's: their plan changed
				if a.planCache != nil {
					a.planCache.Forget(id)
				}
			}
		})
	})
}
