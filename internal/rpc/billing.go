package rpc

import (
	"context"

	"connectrpc.com/connect"

	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/billing"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// BillingHandler serves parley.v1.BillingService on top of billing.Service.
type BillingHandler struct {
	billing *billing.Service
}

var _ parleyv1connect.BillingServiceHandler = (*BillingHandler)(nil)

// NewBillingHandler returns a handler for svc.
func NewBillingHandler(svc *billing.Service) *BillingHandler {
	return &BillingHandler{billing: svc}
}

// CreateCheckoutSession implements parleyv1connect.BillingServiceHandler.
func (h *BillingHandler) CreateCheckoutSession(ctx context.Context, req *connect.Request[parleyv1.CreateCheckoutSessionRequest]) (*connect.Response[parleyv1.CreateCheckoutSessionResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	claims, _ := auth.ClaimsFrom(ctx)
	url, err := h.billing.CreateCheckoutSession(ctx, billing.Caller{UserID: uid, Email: claims.Email, Anonymous: claims.IsAnonymous}, req.Msg.GetPlan())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.CreateCheckoutSessionResponse{Url: url}), nil
}

// CreateBillingPortalSession implements parleyv1connect.BillingServiceHandler.
func (h *BillingHandler) CreateBillingPortalSession(ctx context.Context, _ *connect.Request[parleyv1.CreateBillingPortalSessionRequest]) (*connect.Response[parleyv1.CreateBillingPortalSessionResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	url, err := h.billing.CreateBillingPortalSession(ctx, uid)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.CreateBillingPortalSessionResponse{Url: url}), nil
}
