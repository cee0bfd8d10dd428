package rpc

import (
	"context"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/parleyhq/parley/internal/attachment"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// AttachmentHandler serves AttachmentService.
type AttachmentHandler struct {
	svc *attachment.Service
}

var _ parleyv1connect.AttachmentServiceHandler = (*AttachmentHandler)(nil)

// NewAttachmentHandler returns the handler over svc.
func NewAttachmentHandler(svc *attachment.Service) *AttachmentHandler {
	return &AttachmentHandler{svc: svc}
}

// GetAttachment implements parleyv1connect.AttachmentServiceHandler.
func (h *AttachmentHandler) GetAttachment(ctx context.Context, req *connect.Request[parleyv1.GetAttachmentRequest]) (*connect.Response[parleyv1.GetAttachmentResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("attachment_id", req.Msg.GetAttachmentId())
	if err != nil {
		return nil, err
	}
	d, err := h.svc.Get(ctx, uid, id)
	if err != nil {
		return nil, err
	}
	resp := &parleyv1.GetAttachmentResponse{Attachment: toProtoAttachment(d.Attachment), Content: d.Content, Url: d.URL}
	if d.URL != "" {
		resp.UrlExpireTime = timestamppb.New(d.URLExpireTime)
	}
	return connect.NewResponse(resp), nil
}

var attachmentKinds = map[attachment.Kind]parleyv1.AttachmentKind{
	attachment.KindImage: parleyv1.AttachmentKind_ATTACHMENT_KIND_IMAGE,
	attachment.KindText:  parleyv1.AttachmentKind_ATTACHMENT_KIND_TEXT,
}

func toProtoAttachment(a attachment.Attachment) *parleyv1.Attachment {
	return &parleyv1.Attachment{
		Id: a.ID.String(), MessageId: a.MessageID.String(), Name: a.Name, ContentType: a.ContentType,
		Kind: attachmentKinds[a.Kind], SizeBytes: a.SizeBytes, Width: int32(a.Width), Height: int32(a.Height),
		Sha256: a.SHA256, CreateTime: timestamppb.New(a.CreateTime),
	}
}

// toUploads is the files of a SendMessage or EditMessage request.
func toUploads(in []*parleyv1.AttachmentUpload) []attachment.Upload {
	if len(in) == 0 {
		return nil
	}
	out := make([]attachment.Upload, len(in))
	for i, u := range in {
		out[i] = attachment.Upload{Name: u.GetName(), Content: u.GetContent()}
	}
	return out
}
