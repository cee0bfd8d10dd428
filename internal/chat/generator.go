package chat

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/broker"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/plan"
)

// GenerationStore persists exchanges and answers. Every method that takes a
// user id treats other users' rows as absent (apperr NotFound).
type GenerationStore interface {
	// LoadContext returns the conversation's settings and the branch ending
	// at leafID (the active leaf when uuid.Nil), root first; the walk up the
	// branch stops after about maxBytes characters (the leaf always comes).
	LoadContext(ctx context.Context, userID, conversationID, leafID uuid.UUID, maxBytes int) (ExchangeContext, error)
	// InsertExchange saves the user message (unless x.UserMessageID is Nil),
	// the streaming assistant message and the new active leaf, atomically.
	// It returns apperr Conflict when x.ClientMessageID was used before.
	InsertExchange(ctx context.Context, userID uuid.UUID, x NewExchange) (*Message, Message, error)
	// FindExchange returns the user message saved under clientMessageID and
	// its first answer.
	FindExchange(ctx context.Context, userID, conversationID uuid.UUID, clientMessageID string) (Message, Message, error)
	// GetMessage returns one of the user's messages (apperr NotFound).
	GetMessage(ctx context.Context, userID, messageID uuid.UUID) (Message, error)
	// GetMessageByGeneration returns the answer a generation writes (apperr NotFound).
	GetMessageByGeneration(ctx context.Context, userID, generationID uuid.UUID) (Message, error)
	// CheckpointMessages saves the answers so far while they stream, all in
	// one write, and returns the ids still streaming: the others were ended
	// elsewhere (stopped by another instance, or deleted).
	CheckpointMessages(ctx context.Context, checkpoints []Checkpoint) ([]uuid.UUID, error)
	// FinishMessage ends a streaming answer; apperr NotFound if it already ended.
	FinishMessage(ctx context.Context, messageID uuid.UUID, f Final) (Message, error)
	// SetTitleIfEmpty sets a generated title unless the conversation has one.
	SetTitleIfEmpty(ctx context.Context, userID, conversationID uuid.UUID, title string) (bool, error)
}

// EventLog shares the events of live generations between instances, so
// that any instance can resume or stop any generation.
type EventLog = broker.Broker

// ExchangeContext is what a generation needs to build its prompt.
type ExchangeContext struct {
	ConversationID uuid.UUID
	Title          string
	SystemPrompt   string
	Model          string
	Branch         []Message // root first; Role, Content, Status, IDs only
}

// NewExchange is an exchange to save before the model is asked.
type NewExchange struct {
	ConversationID     uuid.UUID
	ParentID           uuid.UUID // parent of the user message (or of the answer, when regenerating)
	UserMessageID      uuid.UUID // uuid.Nil: no new user message (regenerate)
	Content            string
	ClientMessageID    string
	AssistantMessageID uuid.UUID
	GenerationID       uuid.UUID
	Model              string
	CreateTime         time.Time
	// ReserveTokens is held against the monthly quota until the answer
	// ends; QuotaTokens is the user's monthly quota and MaxActive the
	// answers they may have streaming at once.
	ReserveTokens int64
	QuotaTokens   int64
	MaxActive     int
}

// Errors InsertExchange returns when a limit, not the input, refuses the
// exchange.
var (
	ErrQuotaExceeded      = errors.New("monthly token quota exceeded")
	ErrTooManyGenerations = errors.New("too many concurrent generations")
	ErrConversationBusy   = errors.New("an answer is streaming in the conversation")
)

// Checkpoint is the text an answer has so far.
type Checkpoint struct {
	MessageID uuid.UUID
	Content   string
}

// Final is how an answer ended.
type Final struct {
	Content      string
	Status       Status
	Model        string
	Usage        Usage
	FinishReason string
}

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
	// Titler writes titles for new conversations; nil disables titles.
	Titler Titler
	// StopWait bounds how long StopGeneration waits for the answer to be
	// saved by the instance that runs it (10s).
	StopWait time.Duration
	// Plans says what each user may spend; nil: no quota, every model.
	Plans plan.Resolver
	// MaxConcurrent is how many answers one user may have streaming at
	// once, across instances (3).
	MaxConcurrent int
	// OutputReserve is the answer length reserved against the quota before
	// the real usage is known (MaxOutputTokens, or 1000 when that is 0).
	OutputReserve int
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
}

// Generator runs generations: it saves the exchange, asks the model,
// relays the answer to every follower and saves it, whatever the client does.
type Generator struct {
	store  GenerationStore
	models *Models
	events EventLog
	log    *slog.Logger
	cfg    GeneratorConfig

	// base is canceled on shutdown; every run derives from it, never from a
	// request, so a client leaving does not stop its answer.
	base       context.Context
	cancelBase context.CancelCauseFunc

	mu   sync.Mutex
	runs map[uuid.UUID]*run
	wg   sync.WaitGroup

	checkpointsOnce sync.Once
}

// errBusy refuses a second answer in a conversation while one streams.
var errBusy = apperr.New(apperr.FailedPrecondition, "an answer is still being written in this conversation: stop it (StopGeneration) or wait for it to end")

// errShutdown cancels runs when the server stops; they save what they have
// with status interrupted.
var errShutdown = errors.New("server shutting down")

// errStopped cancels a run that a user stopped.
var errStopped = errors.New("stopped by the user")

// NewGenerator returns a Generator. Call Listen to receive stop requests
// from other instances and Shutdown when the server stops.
func NewGenerator(store GenerationStore, models *Models, events EventLog, log *slog.Logger, cfg GeneratorConfig) *Generator {
	cfg.defaults()
	base, cancel := context.WithCancelCause(context.Background())
	return &Generator{store: store, models: models, events: events, log: log, cfg: cfg, base: base, cancelBase: cancel, runs: map[uuid.UUID]*run{}}
}

// Listen subscribes to stop requests from any instance until ctx ends.
func (g *Generator) Listen(ctx context.Context) error {
	stops, err := g.events.Stops(ctx)
	if err != nil {
		return err
	}
	go func() {
		for id := range stops {
			if r := g.local(id); r != nil {
				r.stop()
			}
		}
	}()
	return nil
}

// Shutdown lets running generations finish until drain has passed, then
// interrupts the rest, which save their partial answers with status
// interrupted. It returns when every run has saved, or when ctx ends.
func (g *Generator) Shutdown(ctx context.Context, drain time.Duration) error {
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	timer := time.NewTimer(drain)
	defer timer.Stop()
	select {
	case <-done:
		g.stopBackground()
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

// stopBackground ends the generator's background work once no run is left.
func (g *Generator) stopBackground() { g.cancelBase(errShutdown) }

func (g *Generator) local(generationID uuid.UUID) *run {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.runs[generationID]
}

// SendInput is a new user message to answer.
type SendInput struct {
	ConversationID  uuid.UUID
	Content         string
	Model           string
	ClientMessageID string
	ParentID        uuid.UUID // uuid.Nil continues the active branch
}

func checkContent(field, content string) error {
	if content == "" {
		return apperr.InvalidField(field, "must not be empty")
	}
	if len(content) > MaxContentBytes {
		return apperr.InvalidField(field, "must be at most %d bytes, got %d", MaxContentBytes, len(content))
	}
	if !utf8.ValidString(content) {
		return apperr.InvalidField(field, "must be valid UTF-8")
	}
	return nil
}

// Send saves the user message and starts its answer. A retry with the same
// ClientMessageID attaches to the first attempt's answer. It returns apperr
// Invalid for bad input, NotFound for a conversation or parent that is not
// the user's, FailedPrecondition while another answer streams in the
// conversation.
func (g *Generator) Send(ctx context.Context, userID uuid.UUID, in SendInput) (Stream, error) {
	if err := checkContent("content", in.Content); err != nil {
		return nil, err
	}
	if len(in.ClientMessageID) > MaxRequestIDBytes {
		return nil, apperr.InvalidField("client_message_id", "must be at most %d bytes", MaxRequestIDBytes)
	}
	xc, err := g.store.LoadContext(ctx, userID, in.ConversationID, in.ParentID, g.loadBytes())
	if err != nil {
		return nil, err
	}
	if in.ParentID != uuid.Nil {
		if len(xc.Branch) == 0 {
			return nil, apperr.New(apperr.NotFound, "parent message not found")
		}
		if xc.Branch[len(xc.Branch)-1].Role != RoleAssistant {
			return nil, apperr.InvalidField("parent_message_id", "must name an assistant message; to change a user message use EditMessage")
		}
	}
	if n := len(xc.Branch); n > 0 && xc.Branch[n-1].Status == StatusStreaming {
		if in.ClientMessageID != "" {
			if s, err := g.attach(ctx, userID, in.ConversationID, in.ClientMessageID); err == nil {
				return s, nil
			}
		}
		return nil, errBusy
	}
	model, provider, err := g.models.resolve("model", in.Model, xc.Model)
	if err != nil {
		return nil, err
	}
	parent := in.ParentID
	if n := len(xc.Branch); parent == uuid.Nil && n > 0 {
		parent = xc.Branch[n-1].ID
	}
	x := NewExchange{
		ConversationID:     in.ConversationID,
		ParentID:           parent,
		UserMessageID:      uuid.New(),
		Content:            in.Content,
		ClientMessageID:    in.ClientMessageID,
		AssistantMessageID: uuid.New(),
		GenerationID:       uuid.New(),
		Model:              model,
	}
	prompt := append(xc.Branch, Message{Role: RoleUser, Content: in.Content})
	s, err := g.start(ctx, userID, x, xc, prompt, provider)
	if apperr.CodeOf(err) == apperr.Conflict && in.ClientMessageID != "" {
		return g.attach(ctx, userID, in.ConversationID, in.ClientMessageID)
	}
	return s, err
}

// attach follows the answer of an earlier send with the same client id.
func (g *Generator) attach(ctx context.Context, userID, conversationID uuid.UUID, clientMessageID string) (Stream, error) {
	_, answer, err := g.store.FindExchange(ctx, userID, conversationID, clientMessageID)
	if err != nil {
		return nil, err
	}
	return g.follow(ctx, userID, answer, 0)
}

// Regenerate writes a new answer beside an assistant message. It returns
// apperr NotFound for a message that is not the user's, Invalid for a
// message that is not an answer.
func (g *Generator) Regenerate(ctx context.Context, userID, messageID uuid.UUID, model string) (Stream, error) {
	old, err := g.store.GetMessage(ctx, userID, messageID)
	if err != nil {
		return nil, err
	}
	if old.Role != RoleAssistant {
		return nil, apperr.InvalidField("message_id", "must name an assistant message; to change a user message use EditMessage")
	}
	if old.ParentID == uuid.Nil {
		return nil, apperr.InvalidField("message_id", "has no user message to answer")
	}
	xc, err := g.store.LoadContext(ctx, userID, old.ConversationID, old.ParentID, g.loadBytes())
	if err != nil {
		return nil, err
	}
	name, provider, err := g.models.resolve("model", model, xc.Model)
	if err != nil {
		return nil, err
	}
	x := NewExchange{
		ConversationID:     old.ConversationID,
		ParentID:           old.ParentID,
		AssistantMessageID: uuid.New(),
		GenerationID:       uuid.New(),
		Model:              name,
	}
	return g.start(ctx, userID, x, xc, xc.Branch, provider)
}

// Edit saves a new version of a user message beside the original and
// answers it. It returns apperr NotFound for a message that is not the
// user's, Invalid for bad content or a message that is not the user's turn.
func (g *Generator) Edit(ctx context.Context, userID, messageID uuid.UUID, content, model string) (Stream, error) {
	if err := checkContent("content", content); err != nil {
		return nil, err
	}
	old, err := g.store.GetMessage(ctx, userID, messageID)
	if err != nil {
		return nil, err
	}
	if old.Role != RoleUser {
		return nil, apperr.InvalidField("message_id", "must name a user message; to rewrite an answer use RegenerateMessage")
	}
	var xc ExchangeContext
	if old.ParentID != uuid.Nil {
		xc, err = g.store.LoadContext(ctx, userID, old.ConversationID, old.ParentID, g.loadBytes())
	} else {
		xc, err = g.store.LoadContext(ctx, userID, old.ConversationID, uuid.Nil, g.loadBytes())
		xc.Branch = nil // the edited message starts the conversation
	}
	if err != nil {
		return nil, err
	}
	name, provider, err := g.models.resolve("model", model, xc.Model)
	if err != nil {
		return nil, err
	}
	x := NewExchange{
		ConversationID:     old.ConversationID,
		ParentID:           old.ParentID,
		UserMessageID:      uuid.New(),
		Content:            content,
		AssistantMessageID: uuid.New(),
		GenerationID:       uuid.New(),
		Model:              name,
	}
	prompt := append(xc.Branch, Message{Role: RoleUser, Content: content})
	return g.start(ctx, userID, x, xc, prompt, provider)
}

// start checks the user's plan, saves the exchange (reserving its tokens)
// and launches its run.
func (g *Generator) start(ctx context.Context, userID uuid.UUID, x NewExchange, xc ExchangeContext, history []Message, provider llm.Provider) (Stream, error) {
	x.CreateTime = time.Now().UTC().Truncate(time.Microsecond)
	prompt := g.buildPrompt(xc, history, x.Model)
	x.QuotaTokens, x.MaxActive = math.MaxInt64, g.cfg.MaxConcurrent
	var quota int64
	if g.cfg.Plans != nil {
		p, err := g.cfg.Plans.PlanOf(ctx, userID)
		if err != nil {
			return nil, err
		}
		if !p.AllowsModel(x.Model) {
			return nil, apperr.New(apperr.PermissionDenied, "model %q is not included in the %s plan", x.Model, p.Name)
		}
		if p.MonthlyTokens > 0 {
			x.QuotaTokens, quota = p.MonthlyTokens, p.MonthlyTokens
		}
	}
	x.ReserveTokens = int64(g.cfg.OutputReserve)
	for _, m := range prompt {
		x.ReserveTokens += int64(llm.EstimateTokens(m.Content))
	}
	user, answer, err := g.store.InsertExchange(ctx, userID, x)
	switch {
	case errors.Is(err, ErrQuotaExceeded):
		reset := nextMonth(x.CreateTime)
		e := apperr.New(apperr.ResourceExhausted, "the monthly quota of %d tokens is used up (this message needs about %d); it resets at %s",
			quota, x.ReserveTokens, reset.Format(time.RFC3339))
		e.RetryAfter = int(time.Until(reset).Seconds()) + 1
		return nil, e
	case errors.Is(err, ErrConversationBusy):
		return nil, errBusy
	case errors.Is(err, ErrTooManyGenerations):
		e := apperr.New(apperr.ResourceExhausted, "at most %d answers can be written at once; wait for one to end or stop it", x.MaxActive)
		e.RetryAfter = 1
		return nil, e
	case err != nil:
		return nil, err
	}
	if user == nil {
		// Regeneration: the user message is the answer's existing parent,
		// the last message of the loaded branch.
		parent := xc.Branch[len(xc.Branch)-1]
		user = &parent
	}
	r := g.newRun(userID, *user, answer, xc, prompt, provider)
	return r.subscribe(0), nil
}

// loadBytes is how much branch text (in characters) to load for a prompt:
// the token budget at the estimate's 4 characters a token.
func (g *Generator) loadBytes() int { return g.cfg.ContextTokens * 4 }

// nextMonth is when the quota period holding t ends.
func nextMonth(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
}

// Resume replays a generation's events after afterSeq and follows it live.
// It returns apperr NotFound for a generation that is not the user's.
func (g *Generator) Resume(ctx context.Context, userID, generationID uuid.UUID, afterSeq int64) (Stream, error) {
	if afterSeq < 0 {
		return nil, apperr.InvalidField("after_seq", "must not be negative")
	}
	answer, err := g.store.GetMessageByGeneration(ctx, userID, generationID)
	if err != nil {
		return nil, err
	}
	return g.follow(ctx, userID, answer, afterSeq)
}

// follow returns the events of answer's generation after afterSeq: from
// this instance if it runs here, else from the shared log, else (the log
// has expired) from the saved messages.
func (g *Generator) follow(ctx context.Context, userID uuid.UUID, answer Message, afterSeq int64) (Stream, error) {
	if r := g.local(answer.GenerationID); r != nil {
		return r.subscribe(afterSeq), nil
	}
	final := func(ctx context.Context) (Message, error) {
		return g.store.GetMessageByGeneration(ctx, userID, answer.GenerationID)
	}
	events, errf, err := g.events.Follow(ctx, answer.GenerationID, afterSeq)
	// A generation that just started on another instance may not have
	// mirrored its first event yet: give it a moment.
	for wait := 0; errors.Is(err, broker.ErrNotFound) && !answer.Final() && wait < 20 && time.Since(answer.CreateTime) < 5*time.Second; wait++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
		events, errf, err = g.events.Follow(ctx, answer.GenerationID, afterSeq)
	}
	if err == nil {
		return &remoteStream{events: events, errf: errf, final: final, seq: afterSeq}, nil
	}
	if !errors.Is(err, broker.ErrNotFound) {
		g.log.WarnContext(ctx, "event log unavailable; replaying from the database", "generation_id", answer.GenerationID, "err", err)
	}
	if !answer.Final() {
		// Streaming, but no instance holds a log: its instance died and
		// the answer will be marked interrupted.
		return nil, apperr.New(apperr.Unavailable, "the generation is no longer running; ListMessages shows what was saved")
	}
	user, err := g.store.GetMessage(ctx, userID, answer.ParentID)
	if err != nil {
		return nil, err
	}
	return replay(user, answer, afterSeq), nil
}

// Stop stops a generation wherever it runs and returns the saved answer.
// Stopping an answer that already ended returns it unchanged. It returns
// apperr NotFound for a generation that is not the user's.
func (g *Generator) Stop(ctx context.Context, userID, generationID uuid.UUID) (Message, error) {
	answer, err := g.store.GetMessageByGeneration(ctx, userID, generationID)
	if err != nil || answer.Final() {
		return answer, err
	}
	var stream Stream
	if r := g.local(generationID); r != nil {
		stream = r.subscribe(0)
		r.stop()
	} else {
		if err := g.events.Stop(ctx, generationID); err != nil {
			g.log.WarnContext(ctx, "could not broadcast stop", "generation_id", generationID, "err", err)
		}
		if events, errf, err := g.events.Follow(ctx, generationID, 0); err == nil {
			stream = &remoteStream{events: events, errf: errf, final: func(ctx context.Context) (Message, error) {
				return g.store.GetMessageByGeneration(ctx, userID, generationID)
			}}
		}
	}
	if stream != nil {
		// Wait until the running instance has saved the stopped answer.
		waitCtx, cancel := context.WithTimeout(ctx, g.cfg.StopWait)
		for {
			ev, err := stream.Next(waitCtx)
			if err != nil || ev.Terminal() {
				break
			}
		}
		cancel()
	}
	answer, err = g.store.GetMessageByGeneration(ctx, userID, generationID)
	if err != nil || answer.Final() {
		return answer, err
	}
	// Nobody answered the stop: the instance that ran it is gone. Keep the
	// last checkpoint as the stopped answer.
	stopped, err := g.store.FinishMessage(context.WithoutCancel(ctx), answer.ID, Final{
		Content: answer.Content, Status: StatusStopped, Model: answer.Model, FinishReason: "stop",
		// The provider's count died with the instance: charge an estimate.
		Usage: Usage{CompletionTokens: int64(llm.EstimateTokens(answer.Content))},
	})
	if apperr.IsNotFound(err) {
		return g.store.GetMessageByGeneration(ctx, userID, generationID)
	}
	return stopped, err
}
