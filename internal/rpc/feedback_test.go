package rpc_test

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// seedExchange saves, straight into the store, a user message and its
// answer in a new conversation of userID: finished unless streaming. It
// returns the conversation and both messages' ids.
func seedExchange(t *testing.T, env *apitest.Env, userID uuid.UUID, streaming bool, rounds []chat.ToolRound) (conv, question, answer uuid.UUID) {
	t.Helper()
	ctx := testCtx(t)
	c, err := env.Store.CreateConversation(ctx, userID, chat.NewConversation{Title: "Lisbon", SystemPrompt: "secret instructions"})
	if err != nil {
		t.Fatal(err)
	}
	q, a, err := env.Store.InsertExchange(ctx, userID, chat.NewExchange{
		ConversationID: c.ID, UserMessageID: uuid.New(), Content: "Where to eat?", AssistantMessageID: uuid.New(),
		GenerationID: uuid.New(), Model: "m1", CreateTime: time.Now(), ReserveTokens: 10, QuotaTokens: 1_000_000, MaxActive: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !streaming {
		if _, err := env.Store.FinishMessage(ctx, a.ID, chat.Outcome{Content: "Try the bakery.", Status: chat.StatusCompleted, Model: "m1", ToolRounds: rounds}); err != nil {
			t.Fatal(err)
		}
	}
	return c.ID, q.ID, a.ID
}

// listedRatings returns the rating of each message ListMessages lists.
func listedRatings(t *testing.T, c parleyv1connect.ChatServiceClient, convID uuid.UUID) []*parleyv1.MessageRating {
	t.Helper()
	res, err := c.ListMessages(testCtx(t), connect.NewRequest(&parleyv1.ListMessagesRequest{ConversationId: convID.String()}))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*parleyv1.MessageRating, len(res.Msg.Messages))
	for i, m := range res.Msg.Messages {
		out[i] = m.Rating
	}
	return out
}

// TestRateMessage: a rating is set, changed and removed, shows on the
// answer in ListMessages, SelectBranch and StopGeneration, and
// goes with the conversation; user messages, answers still streaming,
// another user's answers and bad input are refused.
func TestRateMessage(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	t.Run("CountsView", func(t *testing.T) { testRatingCountsView(t, env) })
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			userID := uuid.New()
			c := env.ChatClient(t, protocol, userID)
			convID, questionID, answerID := seedExchange(t, env, userID, false, nil)
			rate := func(id uuid.UUID, r parleyv1.Rating, text string, tags ...string) (*parleyv1.MessageRating, error) {
				res, err := c.RateMessage(ctx, connect.NewRequest(&parleyv1.RateMessageRequest{MessageId: id.String(), Rating: r, Text: text, Tags: tags}))
				if err != nil {
					return nil, err
				}
				return res.Msg.Rating, nil
			}
			ignoreTime := protocmp.IgnoreFields(&parleyv1.MessageRating{}, "update_time")

			t.Run("OK", func(t *testing.T) {
				got, err := rate(answerID, parleyv1.Rating_RATING_UP, "spot on", " local ", "short", "local")
				if err != nil {
					t.Fatal(err)
				}
				want := &parleyv1.MessageRating{Rating: parleyv1.Rating_RATING_UP, Text: "spot on", Tags: []string{"local", "short"}}
				if diff := cmp.Diff(want, got, protocmp.Transform(), ignoreTime); diff != "" || got.UpdateTime == nil {
					t.Errorf("RateMessage (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff([]*parleyv1.MessageRating{nil, want}, listedRatings(t, c, convID), protocmp.Transform(), ignoreTime); diff != "" {
					t.Errorf("ListMessages ratings (-want +got):\n%s", diff)
				}
				// Changed: one rating per user and message.
				if _, err := rate(answerID, parleyv1.Rating_RATING_DOWN, ""); err != nil {
					t.Fatal(err)
				}
				want = &parleyv1.MessageRating{Rating: parleyv1.Rating_RATING_DOWN}
				if diff := cmp.Diff([]*parleyv1.MessageRating{nil, want}, listedRatings(t, c, convID), protocmp.Transform(), ignoreTime); diff != "" {
					t.Errorf("ListMessages after the change (-want +got):\n%s", diff)
				}
				sel, err := c.SelectBranch(ctx, connect.NewRequest(&parleyv1.SelectBranchRequest{ConversationId: convID.String(), MessageId: answerID.String()}))
				if err != nil || len(sel.Msg.Messages) != 2 || sel.Msg.Messages[1].GetRating().GetRating() != parleyv1.Rating_RATING_DOWN {
					t.Errorf("SelectBranch = %v, %v; want the answer rated down", sel, err)
				}
				// StopGeneration answers an ended answer as saved, rating included.
				stop, err := c.StopGeneration(ctx, connect.NewRequest(&parleyv1.StopGenerationRequest{GenerationId: sel.Msg.Messages[1].GenerationId}))
				if err != nil || stop.Msg.Message.GetRating().GetRating() != parleyv1.Rating_RATING_DOWN {
					t.Errorf("StopGeneration of the rated answer = %v, %v; want it rated down", stop, err)
				}
				// Removed.
				if got, err := rate(answerID, parleyv1.Rating_RATING_NONE, "ignored"); err != nil || got != nil {
					t.Fatalf("RATING_NONE = %v, %v; want no rating", got, err)
				}
				if diff := cmp.Diff([]*parleyv1.MessageRating{nil, nil}, listedRatings(t, c, convID), protocmp.Transform()); diff != "" {
					t.Errorf("ListMessages after the removal (-want +got):\n%s", diff)
				}
				// Removing again is no error.
				if _, err := rate(answerID, parleyv1.Rating_RATING_NONE, ""); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("ErrUserMessage", func(t *testing.T) {
				_, err := rate(questionID, parleyv1.Rating_RATING_UP, "")
				wantCode(t, err, connect.CodeInvalidArgument, "only the assistant's answers can be rated")
			})
			t.Run("ErrStreaming", func(t *testing.T) {
				_, _, streaming := seedExchange(t, env, userID, true, nil)
				_, err := rate(streaming, parleyv1.Rating_RATING_UP, "")
				wantCode(t, err, connect.CodeFailedPrecondition, "still being written")
			})
			t.Run("ErrOtherUser", func(t *testing.T) {
				if _, err := rate(answerID, parleyv1.Rating_RATING_UP, "mine"); err != nil {
					t.Fatal(err)
				}
				other := env.ChatClient(t, protocol, uuid.New())
				for _, r := range []parleyv1.Rating{parleyv1.Rating_RATING_DOWN, parleyv1.Rating_RATING_NONE} {
					_, err := other.RateMessage(ctx, connect.NewRequest(&parleyv1.RateMessageRequest{MessageId: answerID.String(), Rating: r}))
					wantCode(t, err, connect.CodeNotFound, "")
				}
				if got := listedRatings(t, c, convID)[1]; got.GetRating() != parleyv1.Rating_RATING_UP || got.GetText() != "mine" {
					t.Errorf("the owner's rating after another user's calls = %v", got)
				}
			})
			t.Run("ErrBadInput", func(t *testing.T) {
				tooMany := make([]string, chat.MaxRatingTags+1)
				for i := range tooMany {
					tooMany[i] = "t" + strings.Repeat("x", i)
				}
				for _, tt := range []struct {
					name  string
					req   *parleyv1.RateMessageRequest
					field string
				}{
					{"BadID", &parleyv1.RateMessageRequest{MessageId: "nope", Rating: parleyv1.Rating_RATING_UP}, "message_id"},
					{"NoRating", &parleyv1.RateMessageRequest{MessageId: answerID.String()}, "rating"},
					{"UnknownRating", &parleyv1.RateMessageRequest{MessageId: answerID.String(), Rating: parleyv1.Rating(7)}, "rating"},
					{"TextTooLong", &parleyv1.RateMessageRequest{MessageId: answerID.String(), Rating: parleyv1.Rating_RATING_UP, Text: strings.Repeat("é", chat.MaxRatingTextRunes+1)}, "text"},
					{"TooManyTags", &parleyv1.RateMessageRequest{MessageId: answerID.String(), Rating: parleyv1.Rating_RATING_UP, Tags: tooMany}, "tags"},
					{"TagTooLong", &parleyv1.RateMessageRequest{MessageId: answerID.String(), Rating: parleyv1.Rating_RATING_UP, Tags: []string{"ok", strings.Repeat("x", chat.MaxRatingTagRunes+1)}}, "tags[1]"},
					{"EmptyTag", &parleyv1.RateMessageRequest{MessageId: answerID.String(), Rating: parleyv1.Rating_RATING_UP, Tags: []string{" "}}, "tags[0]"},
				} {
					t.Run(tt.name, func(t *testing.T) {
						_, err := c.RateMessage(ctx, connect.NewRequest(tt.req))
						wantCode(t, err, connect.CodeInvalidArgument, tt.field+":")
					})
				}
			})
			t.Run("DeletedWithConversation", func(t *testing.T) {
				if _, err := rate(answerID, parleyv1.Rating_RATING_UP, ""); err != nil {
					t.Fatal(err)
				}
				if _, err := c.DeleteConversation(ctx, connect.NewRequest(&parleyv1.DeleteConversationRequest{ConversationId: convID.String()})); err != nil {
					t.Fatal(err)
				}
				if n := countRows(t, env.Store.Pool(), "SELECT count(*) FROM parley.message_ratings WHERE user_id = $1", userID); n != 0 {
					t.Errorf("%d ratings left after the conversation's delete", n)
				}
			})
		})
	}
}

// testRatingCountsView: the operators' view counts ratings per model and
// day, as the README's query reads it.
func testRatingCountsView(t *testing.T, env *apitest.Env) {
	t.Parallel()
	ctx := testCtx(t)
	model := "view-model-" + uuid.NewString()
	for _, value := range []chat.RatingValue{chat.RatingUp, chat.RatingUp, chat.RatingDown} {
		userID := uuid.New()
		_, _, answerID := seedExchange(t, env, userID, false, nil)
		if _, err := env.Store.Pool().Exec(ctx, "UPDATE parley.messages SET model = $1 WHERE id = $2", model, answerID); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Store.SaveRating(ctx, userID, answerID, chat.Rating{Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	var day time.Time
	var up, down int64
	if err := env.Store.Pool().QueryRow(ctx, "SELECT day, up, down FROM parley.message_rating_counts WHERE model = $1", model).Scan(&day, &up, &down); err != nil {
		t.Fatal(err)
	}
	if today := time.Now().UTC().Format(time.DateOnly); day.Format(time.DateOnly) != today || up != 2 || down != 1 {
		t.Errorf("view row = %s up %d down %d; want %s up 2 down 1", day.Format(time.DateOnly), up, down, today)
	}
}

func countRows(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(testCtx(t), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
