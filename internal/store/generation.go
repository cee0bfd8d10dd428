package store

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/store/sqlcgen"
)

// maxBranchDepth bounds the walk up a branch when building a prompt; the
// prompt is trimmed to the model's budget anyway.
const maxBranchDepth = 2000

// LoadContext implements chat.GenerationStore in one round trip.
func (s *Store) LoadContext(ctx context.Context, userID, conversationID, leafID uuid.UUID, maxBytes int) (chat.ExchangeContext, error) {
	rows, err := s.q.LoadContext(ctx, sqlcgen.LoadContextParams{
		ConversationID: conversationID, UserID: userID, LeafID: nonNil(leafID), MaxDepth: maxBranchDepth, MaxBytes: int64(maxBytes),
	})
	if err != nil {
		return chat.ExchangeContext{}, interpretError(err, "conversation")
	}
	if len(rows) == 0 {
		return chat.ExchangeContext{}, apperr.New(apperr.NotFound, "conversation not found")
	}
	x := chat.ExchangeContext{
		ConversationID: conversationID,
		Title:          rows[0].ConversationTitle,
		SystemPrompt:   rows[0].SystemPrompt,
		Model:          rows[0].ConversationModel,
	}
	for _, r := range rows {
		if r.MessageID == nil {
			continue
		}
		x.Branch = append(x.Branch, chat.Message{
			ID:             *r.MessageID,
			ConversationID: conversationID,
			ParentID:       deref(r.ParentID),
			Role:           chat.Role(deref(r.Role)),
			Content:        deref(r.Content),
			Status:         chat.Status(deref(r.Status)),
			ToolRounds:     toToolRounds(r.ToolRounds),
			// ClientMessageID lets a retried send be recognized without
			// another round trip.
			ClientMessageID: deref(r.ClientMessageID),
		})
	}
	return x, nil
}

// InsertExchange implements chat.GenerationStore in one round trip.
func (s *Store) InsertExchange(ctx context.Context, userID uuid.UUID, x chat.NewExchange) (*chat.Message, chat.Message, error) {
	month := monthOf(x.CreateTime)
	q := s.q
	if len(x.Attachments) > 0 && x.UserMessageID != uuid.Nil {
		// The attachments are saved with their message, in one transaction.
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			return nil, chat.Message{}, interpretError(err, "message")
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		q = s.q.WithTx(tx)
		user, answer, err := s.insertExchange(ctx, q, userID, month, x)
		if err != nil {
			return nil, chat.Message{}, err
		}
		if err := insertAttachments(ctx, q, userID, x.Attachments); err != nil {
			return nil, chat.Message{}, interpretError(err, "attachment")
		}
		if err := tx.Commit(ctx); err != nil {
			return nil, chat.Message{}, interpretError(err, "message")
		}
		if user != nil {
			user.Attachments = metadataOnly(x.Attachments)
		}
		return user, answer, nil
	}
	return s.insertExchange(ctx, q, userID, month, x)
}

// insertExchange is InsertExchange's statement, on q.
func (s *Store) insertExchange(ctx context.Context, q *sqlcgen.Queries, userID uuid.UUID, month time.Time, x chat.NewExchange) (*chat.Message, chat.Message, error) {
	rows, err := q.InsertMessages(ctx, sqlcgen.InsertMessagesParams{
		Month:              month,
		ReserveTokens:      x.ReserveTokens,
		QuotaTokens:        x.QuotaTokens,
		MaxActive:          int32(x.MaxActive),
		ConversationID:     x.ConversationID,
		UserID:             userID,
		ParentID:           nonNil(x.ParentID),
		UserMessageID:      x.UserMessageID,
		Content:            x.Content,
		ClientMessageID:    nonEmpty(x.ClientMessageID),
		CreateTime:         x.CreateTime,
		WithUserMessage:    x.UserMessageID != uuid.Nil,
		AssistantMessageID: x.AssistantMessageID,
		Model:              x.Model,
		GenerationID:       &x.GenerationID,
		PromptTokens:       x.PromptTokens,
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.ConstraintName == "messages_client_message_id_key" {
			return nil, chat.Message{}, apperr.Wrap(err, apperr.Conflict, "client_message_id was used before")
		}
		if errors.As(err, &pgErr) && pgErr.ConstraintName == "messages_one_streaming_idx" {
			return nil, chat.Message{}, chat.ErrConversationBusy
		}
		return nil, chat.Message{}, interpretError(err, "message")
	}
	var user *chat.Message
	var assistant chat.Message
	for _, r := range rows {
		m := toMessage(sqlcgen.ParleyMessage(r))
		if m.Role == chat.RoleUser {
			user = &m
		} else {
			assistant = m
		}
	}
	if assistant.ID == uuid.Nil {
		// Nothing inserted: a limit refused it, or the conversation or the
		// parent is not the user's. Off the hot path, find out which.
		return nil, chat.Message{}, s.whyNotInserted(ctx, userID, month, x)
	}
	return user, assistant, nil
}

func (s *Store) whyNotInserted(ctx context.Context, userID uuid.UUID, month time.Time, x chat.NewExchange) error {
	u, err := s.q.GetTokenUsage(ctx, sqlcgen.GetTokenUsageParams{UserID: userID, Month: month})
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return interpretError(err, "token usage")
	}
	switch {
	case x.ReserveTokens > x.QuotaTokens || (err == nil && u.UsedTokens+u.ReservedTokens+x.ReserveTokens > x.QuotaTokens):
		return chat.ErrQuotaExceeded
	case x.MaxActive < 1 || (err == nil && int(u.ActiveGenerations) >= x.MaxActive):
		return chat.ErrTooManyGenerations
	}
	if n, err := s.q.CountStreaming(ctx, sqlcgen.CountStreamingParams{ConversationID: x.ConversationID, UserID: userID}); err == nil && n > 0 {
		return chat.ErrConversationBusy
	}
	if _, err := s.q.GetConversation(ctx, sqlcgen.GetConversationParams{ID: x.ConversationID, UserID: userID}); err != nil {
		return interpretError(err, "conversation")
	}
	if x.ParentID != uuid.Nil {
		if p, err := s.q.GetMessage(ctx, sqlcgen.GetMessageParams{ID: x.ParentID, UserID: userID}); err != nil || p.ConversationID != x.ConversationID {
			return apperr.New(apperr.NotFound, "parent message not found")
		}
	}
	// Everything exists, so a limit refused the insert and has been freed
	// since (these reads come after it): ask the client to retry shortly.
	return chat.ErrTooManyGenerations
}

// monthOf is the first day (UTC) of t's month: the quota period.
func monthOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// TokenUsage returns the user's usage for the month that holds t.
func (s *Store) TokenUsage(ctx context.Context, userID uuid.UUID, t time.Time) (chat.TokenUsage, error) {
	u, err := s.q.GetTokenUsage(ctx, sqlcgen.GetTokenUsageParams{UserID: userID, Month: monthOf(t)})
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.TokenUsage{Month: monthOf(t)}, nil
	}
	if err != nil {
		return chat.TokenUsage{}, interpretError(err, "token usage")
	}
	return chat.TokenUsage{Month: u.Month, Used: u.UsedTokens, Reserved: u.ReservedTokens, Active: int(u.ActiveGenerations)}, nil
}

// FindExchange implements chat.GenerationStore.
func (s *Store) FindExchange(ctx context.Context, userID, conversationID uuid.UUID, clientMessageID string) (chat.Message, chat.Message, error) {
	rows, err := s.q.GetExchangeByClientMessageID(ctx, sqlcgen.GetExchangeByClientMessageIDParams{
		ConversationID: conversationID, UserID: userID, ClientMessageID: &clientMessageID,
	})
	if err != nil {
		return chat.Message{}, chat.Message{}, interpretError(err, "message")
	}
	if len(rows) != 2 {
		return chat.Message{}, chat.Message{}, apperr.New(apperr.NotFound, "message not found")
	}
	// The tagged message comes first: the user message of a send or an
	// edit, or the answer of a regenerate.
	a, b := toMessage(sqlcgen.ParleyMessage(rows[0])), toMessage(sqlcgen.ParleyMessage(rows[1]))
	if a.Role == chat.RoleAssistant {
		a, b = b, a
	}
	return a, b, nil
}

// GetMessage implements chat.GenerationStore.
func (s *Store) GetMessage(ctx context.Context, userID, messageID uuid.UUID) (chat.Message, error) {
	row, err := s.q.GetMessage(ctx, sqlcgen.GetMessageParams{ID: messageID, UserID: userID})
	if err != nil {
		return chat.Message{}, interpretError(err, "message")
	}
	return toMessage(row), nil
}

// GetMessageByGeneration implements chat.GenerationStore.
func (s *Store) GetMessageByGeneration(ctx context.Context, userID, generationID uuid.UUID) (chat.Message, error) {
	row, err := s.q.GetMessageByGeneration(ctx, sqlcgen.GetMessageByGenerationParams{GenerationID: &generationID, UserID: userID})
	if err != nil {
		return chat.Message{}, interpretError(err, "generation")
	}
	m := toMessage(row.ParleyMessage)
	m.Rating = toRating(row.Rating, row.RatingComment, row.RatingTags, row.RatingTime)
	return m, nil
}

// CheckpointMessages implements chat.GenerationStore in one round trip.
func (s *Store) CheckpointMessages(ctx context.Context, checkpoints []chat.Checkpoint) ([]uuid.UUID, error) {
	arg := sqlcgen.CheckpointMessagesParams{
		Ids:      make([]uuid.UUID, len(checkpoints)),
		Contents: make([]string, len(checkpoints)),
		Changed:  make([]bool, len(checkpoints)),
	}
	for i, c := range checkpoints {
		arg.Ids[i], arg.Changed[i] = c.MessageID, !c.Unchanged
		if !c.Unchanged {
			arg.Contents[i] = c.Content
		}
	}
	ids, err := s.q.CheckpointMessages(ctx, arg)
	return ids, interpretError(err, "messages")
}

// FinishMessage implements chat.GenerationStore.
func (s *Store) FinishMessage(ctx context.Context, messageID uuid.UUID, o chat.Outcome) (chat.Message, error) {
	rounds, err := fromToolRounds(o.ToolRounds)
	if err != nil {
		return chat.Message{}, apperr.Wrap(err, apperr.Internal, "encode the answer's tool calls")
	}
	row, err := s.q.FinishMessage(ctx, sqlcgen.FinishMessageParams{
		ToolRounds:       rounds,
		ID:               messageID,
		Content:          o.Content,
		Status:           string(o.Status),
		Model:            o.Model,
		PromptTokens:     o.Usage.PromptTokens,
		CompletionTokens: o.Usage.CompletionTokens,
		FinishReason:     o.FinishReason,
		Cached:           o.Cached,
	})
	if err != nil {
		return chat.Message{}, interpretError(err, "message")
	}
	return toMessage(sqlcgen.ParleyMessage(row)), nil
}

// SaveTitle implements chat.GenerationStore in one round trip.
func (s *Store) SaveTitle(ctx context.Context, userID, conversationID uuid.UUID, title string, at time.Time, tokens int64) (bool, error) {
	set, err := s.q.SaveTitle(ctx, sqlcgen.SaveTitleParams{
		ID: conversationID, UserID: userID, Title: title, Month: monthOf(at), Tokens: tokens,
	})
	return set, interpretError(err, "conversation")
}

// InterruptStale marks answers that have been streaming since before
// `before` as interrupted (their instance died) and returns how many.
func (s *Store) InterruptStale(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.q.InterruptStaleMessages(ctx, before)
	return n, interpretError(err, "messages")
}

// SelectBranch implements chat.Store: the conversation's active leaf becomes
// the newest leaf below messageID.
func (s *Store) SelectBranch(ctx context.Context, userID, conversationID, messageID uuid.UUID) error {
	leaf, err := s.q.NewestLeaf(ctx, sqlcgen.NewestLeafParams{MessageID: messageID, ConversationID: conversationID, UserID: userID})
	if err != nil {
		return interpretError(err, "message")
	}
	n, err := s.q.SetActiveLeaf(ctx, sqlcgen.SetActiveLeafParams{LeafID: &leaf, ID: conversationID, UserID: userID})
	if err != nil {
		return interpretError(err, "conversation")
	}
	if n == 0 {
		return apperr.New(apperr.NotFound, "conversation not found")
	}
	return nil
}
