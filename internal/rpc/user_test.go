package rpc_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/llm/llmtest"
	"github.com/parleyhq/parley/internal/plan"
)

// userPlans lets free users use one of the server's two models.
var userPlans = plan.Catalog{
	Anonymous: plan.Plan{Name: plan.Anonymous, RateMultiplier: 1, MonthlyTokens: 1000, Models: []string{"cheap-model"}},
	Free:      plan.Plan{Name: plan.Free, RateMultiplier: 1, MonthlyTokens: 50_000, Models: []string{"cheap-model"}},
}

// userEnv is a server offering cheap-model and big-model under userPlans,
// served by a fake model that holds every answer until released.
func userEnv(t *testing.T) (*apitest.Env, *llmtest.Server) {
	t.Helper()
	fake := llmtest.NewServer(t, llmtest.Hold())
	return apitest.New(t, apitest.Options{
		Provider: llm.NewOpenAI(llm.OpenAIConfig{BaseURL: fake.URL, APIKey: "sk-test", IdleTimeout: testIdleTimeout}),
		Models:   []string{"cheap-model", "big-model"},
		Plans:    userPlans,
		// As fakeEnv's servers: no other test's agent steps on this fake.
		NoAgentWorkers: true,
	}), fake
}

// TestUserService runs every UserService RPC over every protocol, on one
// server. It is not parallel with the package's other tests: their servers
// together come close to PostgreSQL's 100 connections already (one more
// made the package fail with "too many clients"), so this one runs, and
// closes its server, before they start; its own subtests run in parallel.
func TestUserService(t *testing.T) {
	env, fake := userEnv(t)
	t.Run("GetMe", func(t *testing.T) { testGetMe(t, env) })
	t.Run("UpdateMe", func(t *testing.T) { testUpdateMe(t, env) })
	t.Run("GetUsage", func(t *testing.T) { testGetUsage(t, env) })
	t.Run("DeleteMe", func(t *testing.T) { testDeleteMe(t, env) })
	t.Run("DeleteMeStopsAnswer", func(t *testing.T) { testDeleteMeStopsAnswer(t, env, fake) })
	t.Run("ExportMyData", func(t *testing.T) { testExportMyData(t, env) })
}

// signWithEmail returns a token for userID carrying email.
func signWithEmail(tb testing.TB, env *apitest.Env, userID uuid.UUID, email string) string {
	tb.Helper()
	token, err := env.Key.SignWithEmail(apitest.Issuer, userID, email, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return token
}

// testGetMe: the first call makes the profile from the token's claims, a
// later token's email replaces it, and an anonymous sign-in is on the
// anonymous plan.
func testGetMe(t *testing.T, env *apitest.Env) {
	t.Parallel()
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			userID := uuid.New()
			first, err := env.UserClientWithToken(protocol, signWithEmail(t, env, userID, "ada@example.com")).GetMe(ctx, connect.NewRequest(&parleyv1.GetMeRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			want := &parleyv1.GetMeResponse{
				Profile:     &parleyv1.Profile{UserId: userID.String(), Email: "ada@example.com"},
				Plan:        &parleyv1.UserPlan{Name: plan.Free, MonthlyTokens: 50_000, Models: []string{"cheap-model"}},
				Preferences: &parleyv1.Preferences{},
			}
			ignoreTimes := protocmp.IgnoreFields(&parleyv1.Profile{}, "create_time", "update_time")
			if diff := cmp.Diff(want, first.Msg, protocmp.Transform(), ignoreTimes); diff != "" {
				t.Errorf("first GetMe (-want +got):\n%s", diff)
			}
			if first.Msg.Profile.CreateTime == nil || first.Msg.Profile.UpdateTime == nil {
				t.Errorf("profile times unset: %v", first.Msg.Profile)
			}

			again, err := env.UserClientWithToken(protocol, signWithEmail(t, env, userID, "ada@new.example")).GetMe(ctx, connect.NewRequest(&parleyv1.GetMeRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			if got := again.Msg.Profile; got.Email != "ada@new.example" || !got.CreateTime.AsTime().Equal(first.Msg.Profile.CreateTime.AsTime()) {
				t.Errorf("after a new token the profile is %v, want the new email and the first create_time", got)
			}

			anonID := uuid.New()
			token, err := env.Key.SignAnonymous(apitest.Issuer, anonID, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			anon, err := env.UserClientWithToken(protocol, token).GetMe(ctx, connect.NewRequest(&parleyv1.GetMeRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			if !anon.Msg.Profile.Anonymous || anon.Msg.Plan.Name != plan.Anonymous {
				t.Errorf("anonymous GetMe = %v", anon.Msg)
			}

			_, err = env.UserClient(t, protocol, uuid.Nil).GetMe(ctx, connect.NewRequest(&parleyv1.GetMeRequest{}))
			wantCode(t, err, connect.CodeUnauthenticated, "")
		})
	}
}

func ptr[T any](v T) *T { return &v }

// testUpdateMe: preferences change field by field, are checked against
// their bounds, the server's models and the plan, and become a new
// conversation's defaults.
func testUpdateMe(t *testing.T, env *apitest.Env) {
	t.Parallel()
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			userID := uuid.New()
			c := env.UserClient(t, protocol, userID)
			res, err := c.UpdateMe(ctx, connect.NewRequest(&parleyv1.UpdateMeRequest{
				DisplayName: ptr("Ada"), DefaultModel: ptr("cheap-model"), DefaultSystemPrompt: ptr("Answer in French."),
			}))
			if err != nil {
				t.Fatal(err)
			}
			want := &parleyv1.Preferences{DisplayName: "Ada", DefaultModel: "cheap-model", DefaultSystemPrompt: "Answer in French."}
			if diff := cmp.Diff(want, res.Msg.Preferences, protocmp.Transform()); diff != "" {
				t.Errorf("after UpdateMe (-want +got):\n%s", diff)
			}
			// Only what is set changes.
			res, err = c.UpdateMe(ctx, connect.NewRequest(&parleyv1.UpdateMeRequest{DisplayName: ptr("")}))
			if err != nil {
				t.Fatal(err)
			}
			want.DisplayName = ""
			if diff := cmp.Diff(want, res.Msg.Preferences, protocmp.Transform()); diff != "" {
				t.Errorf("after clearing the name (-want +got):\n%s", diff)
			}
			me, err := c.GetMe(ctx, connect.NewRequest(&parleyv1.GetMeRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, me.Msg.Preferences, protocmp.Transform()); diff != "" {
				t.Errorf("GetMe after UpdateMe (-want +got):\n%s", diff)
			}

			// A new conversation that sets neither takes the defaults; one
			// that sets them keeps its own.
			chatClient := env.ChatClient(t, protocol, userID)
			conv := create(t, chatClient, "defaults")
			if conv.Model != "cheap-model" || conv.SystemPrompt != "Answer in French." {
				t.Errorf("conversation without settings = model %q, prompt %q; want the defaults", conv.Model, conv.SystemPrompt)
			}
			own, err := chatClient.CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{Model: "big-model", SystemPrompt: "Be brief."}))
			if err != nil {
				t.Fatal(err)
			}
			if own.Msg.Conversation.Model != "big-model" || own.Msg.Conversation.SystemPrompt != "Be brief." {
				t.Errorf("conversation with settings = %v", own.Msg.Conversation)
			}

			tests := []struct {
				name    string
				req     *parleyv1.UpdateMeRequest
				code    connect.Code
				message string
			}{
				{"ErrDisplayNameTooLong", &parleyv1.UpdateMeRequest{DisplayName: ptr(strings.Repeat("é", 101))}, connect.CodeInvalidArgument, "display_name: must be at most 100 characters"},
				{"ErrSystemPromptTooLong", &parleyv1.UpdateMeRequest{DefaultSystemPrompt: ptr(strings.Repeat("a", 8001))}, connect.CodeInvalidArgument, "default_system_prompt: must be at most 8000 characters"},
				{"ErrUnknownModel", &parleyv1.UpdateMeRequest{DefaultModel: ptr("gpt-9")}, connect.CodeInvalidArgument, `default_model: "gpt-9" is not a model this server offers`},
				{"ErrModelNotInPlan", &parleyv1.UpdateMeRequest{DefaultModel: ptr("big-model"), DisplayName: ptr("changed")}, connect.CodePermissionDenied, `the free plan does not include "big-model"; choose one of cheap-model`},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					_, err := c.UpdateMe(ctx, connect.NewRequest(tt.req))
					wantCode(t, err, tt.code, tt.message)
				})
			}
			// A refused update changes nothing.
			me, err = c.GetMe(ctx, connect.NewRequest(&parleyv1.GetMeRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, me.Msg.Preferences, protocmp.Transform()); diff != "" {
				t.Errorf("after refused updates (-want +got):\n%s", diff)
			}
			// The server's default is always allowed.
			if _, err := c.UpdateMe(ctx, connect.NewRequest(&parleyv1.UpdateMeRequest{DefaultModel: ptr("")})); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// outboxOnly is a push queue that never publishes: the runs a test seeds
// straight into the store keep their tasks in the outbox, where River's
// workers do not look.
type outboxOnly struct{}

func (outboxOnly) PublishTask(context.Context, agent.Task, time.Time) error {
	return errors.New("not published in this test")
}

// seedUsage gives userID this month: an answer of cheap-model that used
// 30+20 tokens, one still being written (reserving 100), a title of 7
// tokens and an agent run of big-model whose plan step used 40.
func seedUsage(t *testing.T, env *apitest.Env, userID uuid.UUID) {
	t.Helper()
	ctx := testCtx(t)
	st := env.Store
	conv, err := st.CreateConversation(ctx, userID, chat.NewConversation{Title: "usage"})
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(parent uuid.UUID) chat.NewExchange {
		return chat.NewExchange{
			ConversationID: conv.ID, ParentID: parent, UserMessageID: uuid.New(), Content: "hello", AssistantMessageID: uuid.New(),
			GenerationID: uuid.New(), Model: "cheap-model", CreateTime: time.Now(), ReserveTokens: 100, QuotaTokens: 1_000_000, MaxActive: 3,
		}
	}
	_, answer, err := st.InsertExchange(ctx, userID, exchange(uuid.Nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.FinishMessage(ctx, answer.ID, chat.Outcome{
		Content: "hi", Status: chat.StatusCompleted, Model: "cheap-model", Usage: chat.Usage{PromptTokens: 30, CompletionTokens: 20},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SaveTitle(ctx, userID, conv.ID, "a title", time.Now(), 7); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.InsertExchange(ctx, userID, exchange(answer.ID)); err != nil {
		t.Fatal(err)
	}
	agents := st.Agents(st.Outbox(outboxOnly{}, nil))
	runID := uuid.New()
	task := agent.Task{RunID: runID, Step: 0, Attempt: 1}
	if _, _, err := agents.CreateRun(ctx, agent.NewRun{ID: runID, UserID: userID, Goal: "g", Model: "big-model", Tools: agent.AllTools}, 3, task); err != nil {
		t.Fatal(err)
	}
	owner := uuid.New()
	if _, err := agents.ClaimStep(ctx, task, owner, time.Minute, time.Now()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := agents.EndStep(ctx, agent.StepEnd{
		Task: task, Owner: owner, UserID: userID, Outcome: agent.Failed, Error: "stopped for the test", Tokens: 40,
		Month: time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC), RunStatus: agent.StatusFailed, RunError: "stopped for the test",
	}); err != nil {
		t.Fatal(err)
	}
}

// testGetUsage: this month's tokens split by kind and model, the quota,
// the reset time and the answers in progress.
func testGetUsage(t *testing.T, env *apitest.Env) {
	t.Parallel()
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			userID := uuid.New()
			seedUsage(t, env, userID)
			res, err := env.UserClient(t, protocol, userID).GetUsage(testCtx(t), connect.NewRequest(&parleyv1.GetUsageRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now().UTC()
			start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
			want := &parleyv1.GetUsageResponse{
				PeriodStart: timestamppb.New(start), ResetTime: timestamppb.New(start.AddDate(0, 1, 0)),
				QuotaTokens: 50_000, UsedTokens: 50 + 7 + 40, ReservedTokens: 100, ActiveAnswers: 1,
				AnswerTokens: 50, AgentRunTokens: 40, TitleTokens: 7,
				ByModel: []*parleyv1.ModelUsage{
					{Model: "cheap-model", Kind: parleyv1.UsageKind_USAGE_KIND_ANSWER, Tokens: 50},
					{Model: "big-model", Kind: parleyv1.UsageKind_USAGE_KIND_AGENT_RUN, Tokens: 40},
				},
			}
			if diff := cmp.Diff(want, res.Msg, protocmp.Transform()); diff != "" {
				t.Errorf("GetUsage (-want +got):\n%s", diff)
			}
			// Another user's usage is not the caller's.
			other, err := env.UserClient(t, protocol, uuid.New()).GetUsage(testCtx(t), connect.NewRequest(&parleyv1.GetUsageRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			if other.Msg.UsedTokens != 0 || other.Msg.ReservedTokens != 0 || len(other.Msg.ByModel) != 0 {
				t.Errorf("a new user's usage = %v", other.Msg)
			}
		})
	}
}

// testDeleteMe: DeleteMe stops the answer being written, removes every
// conversation, artifact and run of the caller (their ids then answer
// not_found), leaves another user's data, can be repeated, and the next
// call with the same token starts a fresh profile and a fresh month.
func testDeleteMe(t *testing.T, env *apitest.Env) {
	t.Parallel()
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			userID, otherID := uuid.New(), uuid.New()
			users := env.UserClient(t, protocol, userID)
			if _, err := users.UpdateMe(ctx, connect.NewRequest(&parleyv1.UpdateMeRequest{DisplayName: ptr("Ada")})); err != nil {
				t.Fatal(err)
			}
			first, err := users.GetMe(ctx, connect.NewRequest(&parleyv1.GetMeRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			seedUsage(t, env, userID)
			chats, artifacts := env.ChatClient(t, protocol, userID), env.ArtifactClient(t, protocol, userID)
			conv := create(t, chats, "to delete")
			art, _ := createArtifact(t, artifacts, &parleyv1.CreateArtifactRequest{Title: "notes", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_TEXT, Content: "x"})
			runs, err := env.AgentClient(t, protocol, userID).ListRuns(ctx, connect.NewRequest(&parleyv1.ListRunsRequest{}))
			if err != nil || len(runs.Msg.Runs) != 1 {
				t.Fatalf("ListRuns = %v, %v; want the seeded run", runs, err)
			}
			otherConv := create(t, env.ChatClient(t, protocol, otherID), "kept")

			for range 2 { // idempotent
				if _, err := users.DeleteMe(ctx, connect.NewRequest(&parleyv1.DeleteMeRequest{})); err != nil {
					t.Fatal(err)
				}
			}
			_, err = chats.GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: conv.Id}))
			wantCode(t, err, connect.CodeNotFound, "")
			_, err = artifacts.GetArtifact(ctx, connect.NewRequest(&parleyv1.GetArtifactRequest{ArtifactId: art.Id}))
			wantCode(t, err, connect.CodeNotFound, "")
			_, err = env.AgentClient(t, protocol, userID).GetRun(ctx, connect.NewRequest(&parleyv1.GetRunRequest{RunId: runs.Msg.Runs[0].Id}))
			wantCode(t, err, connect.CodeNotFound, "")
			list, err := chats.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
			if err != nil || len(list.Msg.Conversations) != 0 {
				t.Errorf("ListConversations after DeleteMe = %v, %v; want none", list, err)
			}
			if _, err := env.ChatClient(t, protocol, otherID).GetConversation(ctx, connect.NewRequest(&parleyv1.GetConversationRequest{ConversationId: otherConv.Id})); err != nil {
				t.Errorf("another user's conversation: %v", err)
			}

			usage, err := users.GetUsage(ctx, connect.NewRequest(&parleyv1.GetUsageRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			if usage.Msg.UsedTokens != 0 || usage.Msg.ReservedTokens != 0 || usage.Msg.ActiveAnswers != 0 || len(usage.Msg.ByModel) != 0 {
				t.Errorf("usage after DeleteMe = %v, want none", usage.Msg)
			}
			again, err := users.GetMe(ctx, connect.NewRequest(&parleyv1.GetMeRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			if again.Msg.Preferences.DisplayName != "" || !again.Msg.Profile.CreateTime.AsTime().After(first.Msg.Profile.CreateTime.AsTime()) {
				t.Errorf("GetMe after DeleteMe = %v; want a fresh profile (the first was created %v)", again.Msg, first.Msg.Profile.CreateTime.AsTime())
			}
		})
	}
}

// testDeleteMeStopsAnswer: an answer being written when its user is
// deleted stops: the model request is canceled and the client's stream
// ends not_found.
func testDeleteMeStopsAnswer(t *testing.T, env *apitest.Env, fake *llmtest.Server) {
	t.Parallel()
	for i, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			ctx := testCtx(t)
			userID := uuid.New()
			chats := env.ChatClient(t, protocol, userID)
			conv := create(t, chats, "held")
			stream, err := send(ctx, chats, conv.Id, "a long answer please")
			if err != nil {
				t.Fatal(err)
			}
			if next(t, stream).GetStarted() == nil {
				t.Fatal("the first event is not started")
			}
			if _, err := env.UserClient(t, protocol, userID).DeleteMe(ctx, connect.NewRequest(&parleyv1.DeleteMeRequest{})); err != nil {
				t.Fatal(err)
			}
			_, err = collectErr(stream, nil)
			wantCode(t, err, connect.CodeNotFound, "")
			if !fake.WaitCanceled(i+1, 10*time.Second) {
				t.Errorf("the model request was not canceled")
			}
		})
	}
}

// export reads a whole ExportMyData stream from offset and returns the
// bytes and the digest the chunks carried.
func export(t *testing.T, c parleyv1connect.UserServiceClient, offset int64, digest string) ([]byte, string) {
	t.Helper()
	stream, err := c.ExportMyData(testCtx(t), connect.NewRequest(&parleyv1.ExportMyDataRequest{Offset: offset, Digest: digest}))
	if err != nil {
		t.Fatal(err)
	}
	var doc []byte
	for stream.Receive() {
		m := stream.Msg()
		if m.Offset != offset+int64(len(doc)) {
			t.Fatalf("chunk at offset %d, want %d", m.Offset, offset+int64(len(doc)))
		}
		doc, digest = append(doc, m.Data...), m.Digest
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return doc, digest
}

// exported is the part of the export document the test compares.
type exported struct {
	Format  string `json:"format"`
	UserID  string `json:"user_id"`
	Profile *struct {
		DisplayName string `json:"display_name"`
	} `json:"profile"`
	Conversations []struct {
		ID       string `json:"id"`
		Markdown string `json:"markdown"`
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
			Model   string `json:"model"`
		} `json:"messages"`
	} `json:"conversations"`
	Artifacts []struct {
		ID       string `json:"id"`
		Versions []struct {
			Version int    `json:"version"`
			Content string `json:"content"`
		} `json:"versions"`
	} `json:"artifacts"`
	AgentRuns []struct {
		Goal   string            `json:"goal"`
		Steps  []json.RawMessage `json:"steps"`
		Events []json.RawMessage `json:"events"`
	} `json:"agent_runs"`
	TokenUsage []struct {
		UsedTokens int64 `json:"used_tokens"`
	} `json:"token_usage"`
}

// testExportMyData: the export holds what the user created, resumes from
// an offset, and after DeleteMe holds nothing.
func testExportMyData(t *testing.T, env *apitest.Env) {
	t.Parallel()
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			userID := uuid.New()
			users := env.UserClient(t, protocol, userID)
			if _, err := users.UpdateMe(ctx, connect.NewRequest(&parleyv1.UpdateMeRequest{DisplayName: ptr("Ada")})); err != nil {
				t.Fatal(err)
			}
			seedUsage(t, env, userID)
			artifacts := env.ArtifactClient(t, protocol, userID)
			art, _ := createArtifact(t, artifacts, &parleyv1.CreateArtifactRequest{Title: "notes", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_TEXT, Content: "v1"})
			updateArtifact(t, artifacts, art.Id, 1, "v2")

			doc, digest := export(t, users, 0, "")
			if sum := sha256.Sum256(doc); hex.EncodeToString(sum[:]) != digest {
				t.Errorf("digest %s is not the document's", digest)
			}
			var got exported
			if err := json.Unmarshal(doc, &got); err != nil {
				t.Fatalf("the export is not JSON: %v", err)
			}
			if got.Format != "parley.export.v1" || got.UserID != userID.String() || got.Profile == nil || got.Profile.DisplayName != "Ada" {
				t.Errorf("export header = %q %q %+v", got.Format, got.UserID, got.Profile)
			}
			if len(got.Conversations) != 1 || len(got.Conversations[0].Messages) != 4 {
				t.Fatalf("exported conversations = %+v, want one with both exchanges", got.Conversations)
			}
			conv := got.Conversations[0]
			if m := conv.Messages[1]; m.Role != "assistant" || m.Content != "hi" || m.Model != "cheap-model" {
				t.Errorf("the first answer = %+v", m)
			}
			if !strings.Contains(conv.Markdown, "## User\n\nhello\n") || !strings.Contains(conv.Markdown, "## Assistant (cheap-model)") {
				t.Errorf("markdown = %q", conv.Markdown)
			}
			if len(got.Artifacts) != 1 || got.Artifacts[0].ID != art.Id || len(got.Artifacts[0].Versions) != 2 || got.Artifacts[0].Versions[1].Content != "v2" {
				t.Errorf("exported artifacts = %+v", got.Artifacts)
			}
			if len(got.AgentRuns) != 1 || got.AgentRuns[0].Goal != "g" || len(got.AgentRuns[0].Steps) == 0 || len(got.AgentRuns[0].Events) == 0 {
				t.Errorf("exported runs = %+v", got.AgentRuns)
			}
			if len(got.TokenUsage) != 1 || got.TokenUsage[0].UsedTokens != 50+7+40 {
				t.Errorf("exported usage = %+v", got.TokenUsage)
			}

			// Resumed halfway, the rest of the same bytes.
			half := int64(len(doc) / 2)
			rest, _ := export(t, users, half, digest)
			if string(rest) != string(doc[half:]) {
				t.Errorf("resumed at %d: %d bytes, want the document's last %d", half, len(rest), len(doc)-int(half))
			}

			if _, err := users.DeleteMe(ctx, connect.NewRequest(&parleyv1.DeleteMeRequest{})); err != nil {
				t.Fatal(err)
			}
			// A resume across the delete is refused: the data changed.
			stream, err := users.ExportMyData(ctx, connect.NewRequest(&parleyv1.ExportMyDataRequest{Offset: half, Digest: digest}))
			if err == nil {
				for stream.Receive() {
				}
				err = stream.Err()
			}
			wantCode(t, err, connect.CodeAborted, "export again from offset 0")
			empty, _ := export(t, users, 0, "")
			var after exported
			if err := json.Unmarshal(empty, &after); err != nil {
				t.Fatal(err)
			}
			if after.Profile != nil || len(after.Conversations)+len(after.Artifacts)+len(after.AgentRuns)+len(after.TokenUsage) != 0 {
				t.Errorf("export after DeleteMe = %s", empty)
			}
		})
	}
}
