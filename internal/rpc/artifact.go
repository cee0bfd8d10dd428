package rpc

import (
	"context"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/artifact"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// ArtifactHandler serves parley.v1.ArtifactService on top of artifact.Service.
type ArtifactHandler struct {
	artifacts *artifact.Service
}

var _ parleyv1connect.ArtifactServiceHandler = (*ArtifactHandler)(nil)

// NewArtifactHandler returns a handler for svc.
func NewArtifactHandler(svc *artifact.Service) *ArtifactHandler {
	return &ArtifactHandler{artifacts: svc}
}

// CreateArtifact implements parleyv1connect.ArtifactServiceHandler.
func (h *ArtifactHandler) CreateArtifact(ctx context.Context, req *connect.Request[parleyv1.CreateArtifactRequest]) (*connect.Response[parleyv1.CreateArtifactResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	kind, err := fromProtoKind(req.Msg.GetKind(), "kind")
	if err != nil {
		return nil, err
	}
	convID, err := optionalID("conversation_id", req.Msg.GetConversationId())
	if err != nil {
		return nil, err
	}
	msgID, err := optionalID("message_id", req.Msg.GetMessageId())
	if err != nil {
		return nil, err
	}
	a, v, err := h.artifacts.Create(ctx, uid, artifact.NewArtifact{
		Title: req.Msg.GetTitle(), Kind: kind, Language: req.Msg.GetLanguage(), Content: req.Msg.GetContent(),
		ConversationID: convID, MessageID: msgID, RequestID: req.Msg.GetRequestId(), Author: artifact.AuthorUser,
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.CreateArtifactResponse{Artifact: toProtoArtifact(a), Version: toProtoVersion(v)}), nil
}

// GetArtifact implements parleyv1connect.ArtifactServiceHandler.
func (h *ArtifactHandler) GetArtifact(ctx context.Context, req *connect.Request[parleyv1.GetArtifactRequest]) (*connect.Response[parleyv1.GetArtifactResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("artifact_id", req.Msg.GetArtifactId())
	if err != nil {
		return nil, err
	}
	a, v, err := h.artifacts.Get(ctx, uid, id, int(req.Msg.GetVersion()))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.GetArtifactResponse{Artifact: toProtoArtifact(a), Version: toProtoVersion(v)}), nil
}

// ListArtifacts implements parleyv1connect.ArtifactServiceHandler.
func (h *ArtifactHandler) ListArtifacts(ctx context.Context, req *connect.Request[parleyv1.ListArtifactsRequest]) (*connect.Response[parleyv1.ListArtifactsResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	var f artifact.Filter
	if f.ConversationID, err = optionalID("conversation_id", req.Msg.GetConversationId()); err != nil {
		return nil, err
	}
	if req.Msg.GetKind() != parleyv1.ArtifactKind_ARTIFACT_KIND_UNSPECIFIED {
		if f.Kind, err = fromProtoKind(req.Msg.GetKind(), "kind"); err != nil {
			return nil, err
		}
	}
	items, next, err := h.artifacts.List(ctx, uid, f, int(req.Msg.GetPageSize()), req.Msg.GetPageToken())
	if err != nil {
		return nil, err
	}
	res := &parleyv1.ListArtifactsResponse{NextPageToken: next, Artifacts: make([]*parleyv1.Artifact, len(items))}
	for i, a := range items {
		res.Artifacts[i] = toProtoArtifact(a)
	}
	return connect.NewResponse(res), nil
}

// UpdateArtifact implements parleyv1connect.ArtifactServiceHandler.
func (h *ArtifactHandler) UpdateArtifact(ctx context.Context, req *connect.Request[parleyv1.UpdateArtifactRequest]) (*connect.Response[parleyv1.UpdateArtifactResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("artifact_id", req.Msg.GetArtifactId())
	if err != nil {
		return nil, err
	}
	if req.Msg.GetBaseVersion() < 1 {
		// Required here; the model's edits (no base) go through artifact.Tools.
		return nil, apperr.InvalidField("base_version", "is required: the version you last read, from 1 (GetArtifact's artifact.latest_version)")
	}
	a, v, err := h.artifacts.Update(ctx, uid, artifact.Edit{
		ArtifactID: id, BaseVersion: int(req.Msg.GetBaseVersion()), Title: req.Msg.Title, Content: req.Msg.GetContent(), Author: artifact.AuthorUser,
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.UpdateArtifactResponse{Artifact: toProtoArtifact(a), Version: toProtoVersion(v)}), nil
}

// ListArtifactVersions implements parleyv1connect.ArtifactServiceHandler.
func (h *ArtifactHandler) ListArtifactVersions(ctx context.Context, req *connect.Request[parleyv1.ListArtifactVersionsRequest]) (*connect.Response[parleyv1.ListArtifactVersionsResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("artifact_id", req.Msg.GetArtifactId())
	if err != nil {
		return nil, err
	}
	items, next, err := h.artifacts.ListVersions(ctx, uid, id, int(req.Msg.GetPageSize()), req.Msg.GetPageToken())
	if err != nil {
		return nil, err
	}
	res := &parleyv1.ListArtifactVersionsResponse{NextPageToken: next, Versions: make([]*parleyv1.ArtifactVersion, len(items))}
	for i, v := range items {
		res.Versions[i] = toProtoVersion(v)
	}
	return connect.NewResponse(res), nil
}

// RestoreArtifactVersion implements parleyv1connect.ArtifactServiceHandler.
func (h *ArtifactHandler) RestoreArtifactVersion(ctx context.Context, req *connect.Request[parleyv1.RestoreArtifactVersionRequest]) (*connect.Response[parleyv1.RestoreArtifactVersionResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("artifact_id", req.Msg.GetArtifactId())
	if err != nil {
		return nil, err
	}
	a, v, err := h.artifacts.Restore(ctx, uid, id, int(req.Msg.GetVersion()), int(req.Msg.GetBaseVersion()))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.RestoreArtifactVersionResponse{Artifact: toProtoArtifact(a), Version: toProtoVersion(v)}), nil
}

// DeleteArtifact implements parleyv1connect.ArtifactServiceHandler.
func (h *ArtifactHandler) DeleteArtifact(ctx context.Context, req *connect.Request[parleyv1.DeleteArtifactRequest]) (*connect.Response[parleyv1.DeleteArtifactResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("artifact_id", req.Msg.GetArtifactId())
	if err != nil {
		return nil, err
	}
	if err := h.artifacts.Delete(ctx, uid, id); err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.DeleteArtifactResponse{}), nil
}

// optionalID parses a UUID field that may be empty (uuid.Nil).
func optionalID(field, value string) (uuid.UUID, error) {
	if value == "" {
		return uuid.Nil, nil
	}
	return parseID(field, value)
}

var artifactKinds = map[artifact.Kind]parleyv1.ArtifactKind{
	artifact.KindText:  parleyv1.ArtifactKind_ARTIFACT_KIND_TEXT,
	artifact.KindCode:  parleyv1.ArtifactKind_ARTIFACT_KIND_CODE,
	artifact.KindSheet: parleyv1.ArtifactKind_ARTIFACT_KIND_SHEET,
}

// fromProtoKind maps a kind from the wire; UNSPECIFIED is "" (the domain
// says it is required) and an unknown number is refused here.
func fromProtoKind(k parleyv1.ArtifactKind, field string) (artifact.Kind, error) {
	if k == parleyv1.ArtifactKind_ARTIFACT_KIND_UNSPECIFIED {
		return "", nil
	}
	for kind, pk := range artifactKinds {
		if pk == k {
			return kind, nil
		}
	}
	return "", apperr.InvalidField(field, "must be ARTIFACT_KIND_TEXT, ARTIFACT_KIND_CODE or ARTIFACT_KIND_SHEET, got %d", int32(k))
}

var artifactAuthors = map[artifact.Author]parleyv1.ArtifactAuthor{
	artifact.AuthorUser:      parleyv1.ArtifactAuthor_ARTIFACT_AUTHOR_USER,
	artifact.AuthorAssistant: parleyv1.ArtifactAuthor_ARTIFACT_AUTHOR_ASSISTANT,
}

func toProtoArtifact(a artifact.Artifact) *parleyv1.Artifact {
	return &parleyv1.Artifact{
		Id:             a.ID.String(),
		Title:          a.Title,
		Kind:           artifactKinds[a.Kind],
		Language:       a.Language,
		ConversationId: idString(a.ConversationID),
		MessageId:      idString(a.MessageID),
		LatestVersion:  int32(a.LatestVersion),
		CreateTime:     timestamppb.New(a.CreateTime),
		UpdateTime:     timestamppb.New(a.UpdateTime),
	}
}

func toProtoVersion(v artifact.Version) *parleyv1.ArtifactVersion {
	return &parleyv1.ArtifactVersion{
		ArtifactId:     v.ArtifactID.String(),
		Version:        int32(v.Number),
		Title:          v.Title,
		Content:        v.Content,
		Author:         artifactAuthors[v.Author],
		ConversationId: idString(v.ConversationID),
		MessageId:      idString(v.MessageID),
		CreateTime:     timestamppb.New(v.CreateTime),
		ContentBytes:   int32(v.ContentBytes),
	}
}
