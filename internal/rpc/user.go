package rpc

import (
	"context"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/auth"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/user"
)

// UserHandler serves parley.v1.UserService on top of user.Service.
type UserHandler struct {
	users *user.Service
}

var _ parleyv1connect.UserServiceHandler = (*UserHandler)(nil)

// NewUserHandler returns a handler for svc.
func NewUserHandler(svc *user.Service) *UserHandler { return &UserHandler{users: svc} }

// identity is the caller as the verified token describes them.
func identity(ctx context.Context) (user.Identity, error) {
	c, ok := auth.ClaimsFrom(ctx)
	if !ok {
		return user.Identity{}, apperr.New(apperr.Unauthenticated, "missing or invalid access token")
	}
	return user.Identity{UserID: c.UserID, Email: c.Email, Anonymous: c.IsAnonymous}, nil
}

// GetMe implements parleyv1connect.UserServiceHandler.
func (h *UserHandler) GetMe(ctx context.Context, _ *connect.Request[parleyv1.GetMeRequest]) (*connect.Response[parleyv1.GetMeResponse], error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, err
	}
	a, err := h.users.Me(ctx, id)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.GetMeResponse{
		Profile: toProtoProfile(a.Profile), Plan: toProtoPlan(a), Preferences: toProtoPreferences(a.Profile.Preferences),
	}), nil
}

// UpdateMe implements parleyv1connect.UserServiceHandler.
func (h *UserHandler) UpdateMe(ctx context.Context, req *connect.Request[parleyv1.UpdateMeRequest]) (*connect.Response[parleyv1.UpdateMeResponse], error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, err
	}
	a, err := h.users.Update(ctx, id, user.Patch{
		DisplayName: req.Msg.DisplayName, DefaultModel: req.Msg.DefaultModel, DefaultSystemPrompt: req.Msg.DefaultSystemPrompt,
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.UpdateMeResponse{
		Profile: toProtoProfile(a.Profile), Plan: toProtoPlan(a), Preferences: toProtoPreferences(a.Profile.Preferences),
	}), nil
}

func toProtoProfile(p user.Profile) *parleyv1.Profile {
	return &parleyv1.Profile{
		UserId: p.UserID.String(), Email: p.Email, Anonymous: p.Anonymous,
		CreateTime: timestamppb.New(p.CreateTime), UpdateTime: timestamppb.New(p.UpdateTime),
	}
}

func toProtoPreferences(p user.Preferences) *parleyv1.Preferences {
	return &parleyv1.Preferences{DisplayName: p.DisplayName, DefaultModel: p.DefaultModel, DefaultSystemPrompt: p.DefaultSystemPrompt}
}

func toProtoPlan(a user.Account) *parleyv1.UserPlan {
	p := &parleyv1.UserPlan{Name: a.Plan.Name, MonthlyTokens: a.Plan.MonthlyTokens, Models: a.Plan.Models}
	if !a.RenewTime.IsZero() {
		p.RenewTime = timestamppb.New(a.RenewTime)
	}
	if !a.EndTime.IsZero() {
		p.EndTime = timestamppb.New(a.EndTime)
	}
	return p
}

// GetUsage implements parleyv1connect.UserServiceHandler.
func (h *UserHandler) GetUsage(ctx context.Context, _ *connect.Request[parleyv1.GetUsageRequest]) (*connect.Response[parleyv1.GetUsageResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	u, err := h.users.Usage(ctx, uid)
	if err != nil {
		return nil, err
	}
	res := &parleyv1.GetUsageResponse{
		PeriodStart: timestamppb.New(u.PeriodStart), ResetTime: timestamppb.New(u.ResetTime), QuotaTokens: u.QuotaTokens,
		UsedTokens: u.UsedTokens, ReservedTokens: u.ReservedTokens, ActiveAnswers: int32(u.ActiveAnswers),
		AnswerTokens: u.AnswerTokens, AgentRunTokens: u.AgentTokens, TitleTokens: u.TitleTokens,
		ByModel: make([]*parleyv1.ModelUsage, len(u.ByModel)),
	}
	for i, m := range u.ByModel {
		res.ByModel[i] = &parleyv1.ModelUsage{Model: m.Model, Kind: usageKinds[m.Kind], Tokens: m.Tokens}
	}
	return connect.NewResponse(res), nil
}

var usageKinds = map[string]parleyv1.UsageKind{
	user.KindAnswer:   parleyv1.UsageKind_USAGE_KIND_ANSWER,
	user.KindAgentRun: parleyv1.UsageKind_USAGE_KIND_AGENT_RUN,
}

// DeleteMe implements parleyv1connect.UserServiceHandler.
func (h *UserHandler) DeleteMe(ctx context.Context, _ *connect.Request[parleyv1.DeleteMeRequest]) (*connect.Response[parleyv1.DeleteMeResponse], error) {
	uid, err := userID(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.users.Delete(ctx, uid); err != nil {
		return nil, err
	}
	return connect.NewResponse(&parleyv1.DeleteMeResponse{}), nil
}

// ExportMyData implements parleyv1connect.UserServiceHandler.
func (h *UserHandler) ExportMyData(ctx context.Context, req *connect.Request[parleyv1.ExportMyDataRequest], stream *connect.ServerStream[parleyv1.ExportMyDataResponse]) error {
	uid, err := userID(ctx)
	if err != nil {
		return err
	}
	return h.users.Export(ctx, uid, req.Msg.GetOffset(), req.Msg.GetDigest(), func(c user.Chunk) error {
		return stream.Send(&parleyv1.ExportMyDataResponse{Offset: c.Offset, Data: c.Data, TotalBytes: c.TotalBytes, Digest: c.Digest})
	})
}
