package rpc

import (
	"context"
	"net/url"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/google/uuid"

	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/share"
)

// SharedCacheControl is what a shared snapshot is served with. A snapshot
// never changes, so the only thing a cache can serve stale is a share
// revoked since: browsers and CDNs (s-maxage) keep it for a minute at
// most, which bounds how long a revoked link still shows, while a link
// posted somewhere popular costs the service one read per CDN location a
// minute instead of one per reader. Errors (not_found included) carry
// none: a share created after an id was probed must not be hidden, and a
// rate-limit answer must not be served to other readers.
const SharedCacheControl = "public, max-age=60, s-maxage=60"

// ShareHandler serves parley.v1.ShareService on top of share.Service.
type ShareHandler struct {
	shares *share.Service
	// publicURL is the base of the share URLs; empty makes them relative.
	publicURL string
}

var _ parleyv1connect.ShareServiceHandler = (*ShareHandler)(nil)

// NewShareHandler returns a handler for svc. publicURL (PUBLIC_URL, may be
// empty) is the base of the URLs it answers.
func NewShareHandler(svc *share.Service, publicURL string) *ShareHandler {
	return &ShareHandler{shares: svc, publicURL: publicURL}
}

// ShareURL is where anyone reads share id's snapshot: a Connect GET of
// GetSharedConversation, which a browser, curl or a CDN can fetch as it
// is. It is relative to the service (it starts with "/") when base is
// empty.
func ShareURL(base, id string) string {
	message := `{"shareId":"` + id + `"}` // the id is base64url: nothing to escape
	return base + parleyv1connect.ShareServiceGetSharedConversationProcedure + "?encoding=json&message=" + url.QueryEscape(message)
}

func (h *ShareHandler) toProtoShare(s share.Share) *parleyv1.Share {
	return &parleyv1.Share{
		Id: s.ID, Url: ShareURL(h.publicURL, s.ID), ConversationId: s.ConversationID.String(), Title: s.Title,
		IncludeSystemPrompt: s.IncludeSystemPrompt, MessageCount: int32(s.MessageCount), CreateTime: timestamppb.New(s.CreateTime),
	}
}

// ShareConversation implements parleyv1connect.ShareServiceHandler.
func (h *ShareHandler) ShareConversation(ctx context.Context, req *connect.Request[parleyv1.ShareConversationRequest]) (*connect.Response[parleyv1.ShareConversationResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("conversation_id", req.Msg.GetConversationId())
	if err != nil {
		return nil, err
	}
	s, err := h.shares.Create(ctx, uid, id, req.Msg.GetIncludeSystemPrompt())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.ShareConversationResponse{Share: h.toProtoShare(s)}), nil
}

// GetSharedConversation implements parleyv1connect.ShareServiceHandler. It
// needs no token (server's isPublic lists it).
func (h *ShareHandler) GetSharedConversation(ctx context.Context, req *connect.Request[parleyv1.GetSharedConversationRequest]) (*connect.Response[parleyv1.GetSharedConversationResponse], error) {
	snap, err := h.shares.Get(ctx, req.Msg.GetShareId())
	if err != nil {
		return nil, err
	}
	res := connect.NewResponse(&parleyv1.GetSharedConversationResponse{Conversation: toProtoSnapshot(snap)})
	res.Header().Set("Cache-Control", SharedCacheControl)
	return res, nil
}

// ListShares implements parleyv1connect.ShareServiceHandler.
func (h *ShareHandler) ListShares(ctx context.Context, req *connect.Request[parleyv1.ListSharesRequest]) (*connect.Response[parleyv1.ListSharesResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	var conv uuid.UUID
	if req.Msg.GetConversationId() != "" {
		if conv, err = parseID("conversation_id", req.Msg.GetConversationId()); err != nil {
			return nil, err
		}
	}
	items, next, err := h.shares.List(ctx, uid, conv, int(req.Msg.GetPageSize()), req.Msg.GetPageToken())
	if err != nil {
		return nil, err
	}
	res := &parleyv1.ListSharesResponse{NextPageToken: next, Shares: make([]*parleyv1.Share, len(items))}
	for i, s := range items {
		res.Shares[i] = h.toProtoShare(s)
	}
	return connect.NewResponse(res), nil
}

// RevokeShare implements parleyv1connect.ShareServiceHandler.
func (h *ShareHandler) RevokeShare(ctx context.Context, req *connect.Request[parleyv1.RevokeShareRequest]) (*connect.Response[parleyv1.RevokeShareResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.shares.Revoke(ctx, uid, req.Msg.GetShareId()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.RevokeShareResponse{}), nil
}

func toProtoSnapshot(s share.Snapshot) *parleyv1.SharedConversation {
	out := &parleyv1.SharedConversation{
		Title: s.Title, SystemPrompt: s.SystemPrompt, CreateTime: timestamppb.New(s.CreateTime),
		Messages: make([]*parleyv1.SharedMessage, len(s.Messages)), Artifacts: make([]*parleyv1.SharedArtifact, len(s.Artifacts)),
	}
	for i, m := range s.Messages {
		pm := &parleyv1.SharedMessage{Role: roles[m.Role], Content: m.Content, Model: m.Model, CreateTime: timestamppb.New(m.CreateTime)}
		for _, a := range m.Artifacts {
			pm.Artifacts = append(pm.Artifacts, &parleyv1.SavedArtifact{ArtifactId: a.ID.String(), Version: int32(a.Version), Title: a.Title, Kind: a.Kind})
		}
		out.Messages[i] = pm
	}
	for i, a := range s.Artifacts {
		out.Artifacts[i] = &parleyv1.SharedArtifact{
			ArtifactId: a.ID.String(), Version: int32(a.Version), Title: a.Title, Kind: a.Kind, Language: a.Language, Content: a.Content,
		}
	}
	return out
}
