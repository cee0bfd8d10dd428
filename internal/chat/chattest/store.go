// Package chattest has in-memory stand-ins for the interfaces the chat
// domain declares, so the rules of an answer's life can be tested in
// milliseconds with no database and no Redis. The tests over the real
// stack (internal/rpc, internal/store) stay the proof that the adapters
// keep the same promises.
package chattest

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
)

// Store is an in-memory chat.GenerationStore with the promises of
// internal/store: ownership by user id, one streaming answer per
// conversation, the concurrency cap and the monthly quota checked on
// insert, idempotent client message ids. It is safe for concurrent use.
type Store struct {
	mu            sync.Mutex
	conversations map[uuid.UUID]*conversation
	messages      map[uuid.UUID]*chat.Message
	order         []uuid.UUID // messages in insertion order
	usage         map[uuid.UUID]*chat.TokenUsage
	reserved      map[uuid.UUID]int64 // each streaming answer's reservation
	checkpoints   [][]chat.Checkpoint
	interrupts    []time.Time
	finishErrs    []error
	finishCalls   int
	changed       chan struct{}
}

type conversation struct {
	chat.Conversation
	leaf    uuid.UUID
	clients map[string]uuid.UUID // client message id → user message id
}

var _ chat.GenerationStore = (*Store)(nil)

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{
		conversations: map[uuid.UUID]*conversation{},
		messages:      map[uuid.UUID]*chat.Message{},
		usage:         map[uuid.UUID]*chat.TokenUsage{},
		reserved:      map[uuid.UUID]int64{},
		changed:       make(chan struct{}),
	}
}

// AddConversation creates a conversation for userID and returns its id.
func (s *Store) AddConversation(userID uuid.UUID, c chat.NewConversation) uuid.UUID {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := uuid.New()
	s.conversations[id] = &conversation{
		Conversation: chat.Conversation{ID: id, UserID: userID, Title: c.Title, SystemPrompt: c.SystemPrompt, Model: c.Model},
		clients:      map[string]uuid.UUID{},
	}
	return id
}

// Message returns a saved message by id, whoever owns it.
func (s *Store) Message(id uuid.UUID) (chat.Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.messages[id]
	if !ok {
		return chat.Message{}, false
	}
	return *m, true
}

// Conversation returns a conversation by id, whoever owns it.
func (s *Store) Conversation(id uuid.UUID) (chat.Conversation, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conversations[id]
	if !ok {
		return chat.Conversation{}, false
	}
	return c.Conversation, true
}

// Delete removes a conversation and its messages, as the database's
// cascade does, releasing what its streaming answers held (charged for
// their saved text), and returns those answers' generation ids, as
// internal/store's DeleteConversation does.
func (s *Store) Delete(conversationID uuid.UUID) []uuid.UUID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var streaming []uuid.UUID
	if c, ok := s.conversations[conversationID]; ok {
		acct := s.account(c.UserID)
		for _, m := range s.messages {
			if m.ConversationID == conversationID && m.Status == chat.StatusStreaming {
				acct.Active--
				acct.Reserved -= s.reserved[m.ID]
				acct.Used += m.Usage.PromptTokens + int64(chat.EstimateTokens(m.Content))
				delete(s.reserved, m.ID)
				streaming = append(streaming, m.GenerationID)
			}
		}
	}
	delete(s.conversations, conversationID)
	for id, m := range s.messages {
		if m.ConversationID == conversationID {
			delete(s.messages, id)
		}
	}
	s.notify()
	return streaming
}

// Usage returns the user's token account for the month holding t.
func (s *Store) Usage(userID uuid.UUID) chat.TokenUsage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.usage[userID]; u != nil {
		return *u
	}
	return chat.TokenUsage{}
}

// SetUsed sets the tokens the user has used this month.
func (s *Store) SetUsed(userID uuid.UUID, used int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.account(userID).Used = used
}

// Checkpoints returns every CheckpointMessages call so far, in order.
func (s *Store) Checkpoints() [][]chat.Checkpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.checkpoints)
}

// Interrupts returns the cutoffs InterruptStale was called with.
func (s *Store) Interrupts() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.interrupts)
}

// FinishCalls counts FinishMessage calls, failed ones included.
func (s *Store) FinishCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finishCalls
}

// FailFinish makes the next FinishMessage calls fail with errs, one each.
func (s *Store) FailFinish(errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finishErrs = append(s.finishErrs, errs...)
}

// WaitFor blocks until cond holds (it is checked under the store's lock
// after every change) or timeout passes, and reports whether it held.
func (s *Store) WaitFor(timeout time.Duration, cond func(*Store) bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if cond(s) {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return cond(s)
		}
	}
}

// notify wakes WaitFor; callers hold s.mu.
func (s *Store) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Store) account(userID uuid.UUID) *chat.TokenUsage {
	u := s.usage[userID]
	if u == nil {
		u = &chat.TokenUsage{}
		s.usage[userID] = u
	}
	return u
}

func (s *Store) owned(userID, conversationID uuid.UUID) (*conversation, error) {
	c, ok := s.conversations[conversationID]
	if !ok || c.UserID != userID {
		return nil, apperr.New(apperr.NotFound, "conversation not found")
	}
	return c, nil
}

// LoadContext implements chat.GenerationStore. maxBytes is ignored: the
// whole branch comes.
func (s *Store) LoadContext(_ context.Context, userID, conversationID, leafID uuid.UUID, _ int) (chat.ExchangeContext, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.owned(userID, conversationID)
	if err != nil {
		return chat.ExchangeContext{}, err
	}
	xc := chat.ExchangeContext{ConversationID: c.ID, Title: c.Title, SystemPrompt: c.SystemPrompt, Model: c.Model}
	id := leafID
	if id == uuid.Nil {
		id = c.leaf
	}
	keys := map[uuid.UUID]string{}
	for k, id := range c.clients {
		keys[id] = k
	}
	for id != uuid.Nil {
		m, ok := s.messages[id]
		if !ok || m.ConversationID != conversationID {
			break
		}
		loaded := *m
		loaded.ClientMessageID = keys[m.ID]
		xc.Branch = append(xc.Branch, loaded)
		id = m.ParentID
	}
	slices.Reverse(xc.Branch)
	return xc, nil
}

// InsertExchange implements chat.GenerationStore.
func (s *Store) InsertExchange(_ context.Context, userID uuid.UUID, x chat.NewExchange) (*chat.Message, chat.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.owned(userID, x.ConversationID)
	if err != nil {
		return nil, chat.Message{}, err
	}
	// The refusals in the order internal/store reports them: the quota,
	// the slots, a busy conversation, and only then the id (its unique
	// index is reached last, by an insert that passed everything else).
	acct := s.account(userID)
	if acct.Used+acct.Reserved+x.ReserveTokens > x.QuotaTokens {
		return nil, chat.Message{}, chat.ErrQuotaExceeded
	}
	if acct.Active >= x.MaxActive {
		return nil, chat.Message{}, chat.ErrTooManyGenerations
	}
	for _, m := range s.messages {
		if m.ConversationID == x.ConversationID && m.Status == chat.StatusStreaming {
			return nil, chat.Message{}, chat.ErrConversationBusy
		}
	}
	if x.ClientMessageID != "" {
		if _, dup := c.clients[x.ClientMessageID]; dup {
			return nil, chat.Message{}, apperr.New(apperr.Conflict, "client_message_id was used before")
		}
	}
	acct.Active++
	acct.Reserved += x.ReserveTokens
	var user *chat.Message
	parent := x.ParentID
	if x.UserMessageID != uuid.Nil {
		user = &chat.Message{
			ID: x.UserMessageID, ConversationID: x.ConversationID, ParentID: x.ParentID, Role: chat.RoleUser,
			Content: x.Content, Status: chat.StatusCompleted, CreateTime: x.CreateTime, UpdateTime: x.CreateTime,
		}
		s.put(user)
		parent = user.ID
		if x.ClientMessageID != "" {
			c.clients[x.ClientMessageID] = user.ID
		}
	}
	answer := &chat.Message{
		ID: x.AssistantMessageID, ConversationID: x.ConversationID, ParentID: parent, Role: chat.RoleAssistant,
		Status: chat.StatusStreaming, Model: x.Model, GenerationID: x.GenerationID, Usage: chat.Usage{PromptTokens: x.PromptTokens},
		CreateTime: x.CreateTime, UpdateTime: x.CreateTime,
	}
	s.put(answer)
	if user == nil && x.ClientMessageID != "" {
		c.clients[x.ClientMessageID] = answer.ID // a regenerate's key tags the answer
	}
	s.reserved[answer.ID] = x.ReserveTokens
	c.leaf = answer.ID
	s.notify()
	if user != nil {
		u := *user
		user = &u
	}
	return user, *answer, nil
}

func (s *Store) put(m *chat.Message) {
	s.messages[m.ID] = m
	s.order = append(s.order, m.ID)
}

// FindExchange implements chat.GenerationStore.
func (s *Store) FindExchange(_ context.Context, userID, conversationID uuid.UUID, clientMessageID string) (chat.Message, chat.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.owned(userID, conversationID)
	if err != nil {
		return chat.Message{}, chat.Message{}, err
	}
	userMessageID, ok := c.clients[clientMessageID]
	if !ok {
		return chat.Message{}, chat.Message{}, apperr.New(apperr.NotFound, "message not found")
	}
	if tagged := s.messages[userMessageID]; tagged != nil && tagged.Role == chat.RoleAssistant {
		if parent := s.messages[tagged.ParentID]; parent != nil {
			return *parent, *tagged, nil
		}
	}
	for _, id := range s.order {
		if m := s.messages[id]; m != nil && m.ParentID == userMessageID && m.Role == chat.RoleAssistant {
			return *s.messages[userMessageID], *m, nil
		}
	}
	return chat.Message{}, chat.Message{}, apperr.New(apperr.NotFound, "message not found")
}

// GetMessage implements chat.GenerationStore.
func (s *Store) GetMessage(_ context.Context, userID, messageID uuid.UUID) (chat.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.messages[messageID]
	if !ok {
		return chat.Message{}, apperr.New(apperr.NotFound, "message not found")
	}
	if _, err := s.owned(userID, m.ConversationID); err != nil {
		return chat.Message{}, apperr.New(apperr.NotFound, "message not found")
	}
	return *m, nil
}

// GetMessageByGeneration implements chat.GenerationStore.
func (s *Store) GetMessageByGeneration(ctx context.Context, userID, generationID uuid.UUID) (chat.Message, error) {
	s.mu.Lock()
	var id uuid.UUID
	for _, m := range s.messages {
		if m.GenerationID == generationID {
			id = m.ID
		}
	}
	s.mu.Unlock()
	if id == uuid.Nil {
		return chat.Message{}, apperr.New(apperr.NotFound, "generation not found")
	}
	return s.GetMessage(ctx, userID, id)
}

// CheckpointMessages implements chat.GenerationStore.
func (s *Store) CheckpointMessages(_ context.Context, cps []chat.Checkpoint) ([]uuid.UUID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkpoints = append(s.checkpoints, slices.Clone(cps))
	var streaming []uuid.UUID
	for _, cp := range cps {
		if m, ok := s.messages[cp.MessageID]; ok && m.Status == chat.StatusStreaming {
			if !cp.Unchanged {
				m.Content = cp.Content
			}
			streaming = append(streaming, m.ID)
		}
	}
	s.notify()
	return streaming, nil
}

// FinishMessage implements chat.GenerationStore.
func (s *Store) FinishMessage(_ context.Context, messageID uuid.UUID, o chat.Outcome) (chat.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finishCalls++
	defer s.notify()
	if len(s.finishErrs) > 0 {
		err := s.finishErrs[0]
		s.finishErrs = s.finishErrs[1:]
		return chat.Message{}, err
	}
	m, ok := s.messages[messageID]
	if !ok || m.Status != chat.StatusStreaming {
		return chat.Message{}, apperr.New(apperr.NotFound, "message not found")
	}
	m.Content, m.Status, m.Model, m.Usage, m.FinishReason, m.ToolRounds, m.Cached = o.Content, o.Status, o.Model, o.Usage, o.FinishReason, o.ToolRounds, o.Cached
	c := s.conversations[m.ConversationID]
	acct := s.account(c.UserID)
	acct.Active--
	acct.Reserved -= s.reserved[m.ID]
	delete(s.reserved, m.ID)
	acct.Used += o.Usage.PromptTokens + o.Usage.CompletionTokens
	s.notify()
	return *m, nil
}

// SaveTitle implements chat.GenerationStore. The store keeps one account
// per user, whatever the month.
func (s *Store) SaveTitle(_ context.Context, userID, conversationID uuid.UUID, title string, _ time.Time, tokens int64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.account(userID).Used += tokens
	defer s.notify()
	c, err := s.owned(userID, conversationID)
	if err != nil || c.Title != "" || title == "" {
		return false, err
	}
	c.Title = title
	return true, nil
}

// InterruptStale implements chat.GenerationStore.
func (s *Store) InterruptStale(_ context.Context, before time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.interrupts = append(s.interrupts, before)
	var n int64
	for _, m := range s.messages {
		if m.Status == chat.StatusStreaming && m.UpdateTime.Before(before) {
			m.Status = chat.StatusInterrupted
			n++
			if c := s.conversations[m.ConversationID]; c != nil {
				acct := s.account(c.UserID)
				acct.Active--
				acct.Reserved -= s.reserved[m.ID]
				acct.Used += m.Usage.PromptTokens + int64(chat.EstimateTokens(m.Content))
				delete(s.reserved, m.ID)
			}
		}
	}
	s.notify()
	return n, nil
}
