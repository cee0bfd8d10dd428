package rpc

import (
	"context"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/parleyhq/parley/internal/apperr"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/search"
)

// SearchHandler serves parley.v1.SearchService on top of search.Service.
type SearchHandler struct {
	search *search.Service
}

var _ parleyv1connect.SearchServiceHandler = (*SearchHandler)(nil)

// NewSearchHandler returns a handler for svc.
func NewSearchHandler(svc *search.Service) *SearchHandler {
	return &SearchHandler{search: svc}
}

// Search implements parleyv1connect.SearchServiceHandler.
func (h *SearchHandler) Search(ctx context.Context, req *connect.Request[parleyv1.SearchRequest]) (*connect.Response[parleyv1.SearchResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	r := search.Request{Query: req.Msg.GetQuery(), PageSize: int(req.Msg.GetPageSize()), PageToken: req.Msg.GetPageToken()}
	if r.ConversationID, err = optionalID("conversation_id", req.Msg.GetConversationId()); err != nil {
		return nil, err
	}
	for _, k := range req.Msg.GetKinds() {
		if k == parleyv1.SearchResultKind_SEARCH_RESULT_KIND_UNSPECIFIED {
			continue // documented as listing nothing
		}
		kind, ok := fromProtoResultKind[k]
		if !ok {
			return nil, apperr.InvalidField("kinds", "must list SEARCH_RESULT_KIND_MESSAGE or SEARCH_RESULT_KIND_ARTIFACT, got %d", int32(k))
		}
		r.Kinds = append(r.Kinds, kind)
	}
	results, next, err := h.search.Search(ctx, uid, r)
	if err != nil {
		return nil, err
	}
	res := &parleyv1.SearchResponse{NextPageToken: next, Results: make([]*parleyv1.SearchResult, len(results))}
	for i, sr := range results {
		res.Results[i] = toProtoResult(sr)
	}
	return connect.NewResponse(res), nil
}

var fromProtoResultKind = map[parleyv1.SearchResultKind]search.Kind{
	parleyv1.SearchResultKind_SEARCH_RESULT_KIND_MESSAGE:  search.KindMessage,
	parleyv1.SearchResultKind_SEARCH_RESULT_KIND_ARTIFACT: search.KindArtifact,
}

func toProtoResult(r search.Result) *parleyv1.SearchResult {
	out := &parleyv1.SearchResult{
		ConversationId: idString(r.ConversationID),
		Title:          r.Title,
		Snippet:        r.Snippet,
		Rank:           r.Rank,
		Time:           timestamppb.New(r.Time),
	}
	switch r.Kind {
	case search.KindMessage:
		out.Kind, out.MessageId = parleyv1.SearchResultKind_SEARCH_RESULT_KIND_MESSAGE, r.ID.String()
	case search.KindArtifact:
		out.Kind, out.ArtifactId = parleyv1.SearchResultKind_SEARCH_RESULT_KIND_ARTIFACT, r.ID.String()
	}
	return out
}
