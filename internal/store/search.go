package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/search"
	"github.com/parleyhq/parley/internal/store/sqlcgen"
)

// Search implements search.Store: one statement, the query of q.Config
// (each configuration has its own vectors and indexes, and the planner
// uses an index only when the configuration is a constant of the query).
func (s *Store) Search(ctx context.Context, userID uuid.UUID, q search.Query) ([]search.Result, error) {
	arg := sqlcgen.SearchSimpleParams{
		UserID:         userID,
		Query:          q.Text,
		WithMessages:   q.Messages,
		WithArtifacts:  q.Artifacts,
		ConversationID: nonNil(q.ConversationID),
		PageLimit:      int32(q.Limit),
	}
	if q.After != nil {
		arg.AfterRank, arg.AfterID = &q.After.Rank, &q.After.ID
	}
	var rows []sqlcgen.SearchSimpleRow
	var err error
	switch q.Config {
	case "simple":
		rows, err = s.q.SearchSimple(ctx, arg)
	case "english":
		var english []sqlcgen.SearchEnglishRow
		english, err = s.q.SearchEnglish(ctx, sqlcgen.SearchEnglishParams(arg))
		for _, r := range english {
			rows = append(rows, sqlcgen.SearchSimpleRow(r))
		}
	default:
		return nil, fmt.Errorf("store: search: unknown text search configuration %q", q.Config)
	}
	if err != nil {
		return nil, interpretError(err, "search results")
	}
	out := make([]search.Result, len(rows))
	for i, r := range rows {
		out[i] = search.Result{
			Kind: search.Kind(r.Kind), ID: r.ID, ConversationID: deref(r.ConversationID),
			Title: r.Title, Snippet: r.Snippet, Rank: r.Rank, Time: r.Time,
		}
	}
	return out, nil
}
