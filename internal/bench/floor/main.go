//go:build bench

// Command floor is the floor rig of the streaming benchmark: a bare relay
// that does, on the path of an answer, exactly the round trips Parley's
// design needs and nothing else, so that the benchmark can show how much
// of Parley's added time to first token and gap between deltas is this
// machine's and how much is Parley's own.
//
// It serves ChatService.SendMessage (the generated Connect handler, so the
// benchmark's client and its checks are the same as for Parley) over h2c
// with connect-go and no interceptors, and for each call, in the handler's
// goroutine:
//
//  1. takes the user id from the bearer token, remembered after a token's
//     first call (Parley verifies a token once and remembers it; this
//     decodes it unverified once and remembers it);
//  2. checks the chat rate limit with ratelimit.Redis, on a client made by
//     redisconn.NewFastClient behind ratelimit.Resilient, as Parley's
//     limiter does: one EVALSHA of the GCRA script (a Redis slower than
//     50 ms falls back to the in-memory limit, as in Parley);
//  3. loads the conversation with store.LoadContext, on a pool opened by
//     store.Open: the statement Parley runs, one round trip;
//  4. asks the model through Parley's provider (llm.OpenAI: openai-go
//     builds and sends the streaming chat completion, and its chunks are
//     decoded as Parley decodes them, so a delta costs the floor what it
//     costs Parley to read) and relays each delta as one message, as it is
//     read.
//
// It saves nothing: the exchange's insert runs concurrently with the
// upstream request in Parley's design, and the checkpoints and the mirror
// are off the path. It listens on 127.0.0.1:$PORT and reads Parley's
// configuration (internal/config) from its environment.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/config"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/ratelimit"
	"github.com/parleyhq/parley/internal/redisconn"
	"github.com/parleyhq/parley/internal/store"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	// Parley's own configuration from the same environment, so that the
	// pool, the statement timeout, the context budget and the model are
	// Parley's.
	cfg, err := config.Load(os.Getenv, config.ModeServe)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, store.Options{
		QueryExecMode: cfg.QueryExecMode, MaxConns: int32(cfg.DatabaseMaxConns), StatementTimeout: cfg.DatabaseStatementTimeout,
	})
	if err != nil {
		return err
	}
	rdb, err := redisconn.NewFastClient(cfg.RedisURL, 50*time.Millisecond)
	if err != nil {
		return err
	}
	h := &relay{
		store:     st,
		limiter:   ratelimit.NewResilient(ratelimit.NewRedis(rdb, "floor:rate:"), slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
		limit:     ratelimit.PerMinute(1_000_000),
		model:     cfg.Models[0],
		loadBytes: cfg.ContextTokens * 4,
		provider:  llm.NewOpenAI(llm.OpenAIConfig{BaseURL: cfg.OpenAIBaseURL, APIKey: cfg.OpenAIAPIKey}),
	}
	mux := http.NewServeMux()
	mux.Handle(parleyv1connect.NewChatServiceHandler(h))
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protocols}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return err
	}
	return srv.Serve(ln)
}

// relay is the floor's ChatService: SendMessage alone.
type relay struct {
	parleyv1connect.UnimplementedChatServiceHandler
	store     *store.Store
	limiter   *ratelimit.Resilient
	limit     ratelimit.Limit
	model     string
	loadBytes int // what Parley loads: the context budget at 4 characters a token
	provider  *llm.OpenAI

	mu    sync.RWMutex
	users map[string]uuid.UUID // bearer token → user id
}

// SendMessage relays the model's answer to the message.
func (h *relay) SendMessage(ctx context.Context, req *connect.Request[parleyv1.SendMessageRequest], out *connect.ServerStream[parleyv1.SendMessageResponse]) error {
	userID, err := h.user(req.Header().Get("Authorization"))
	if err != nil {
		return connect.NewError(connect.CodeUnauthenticated, err)
	}
	if res, _ := h.limiter.Allow(ctx, "chat:user:"+userID.String(), h.limit, false); !res.Allowed {
		return connect.NewError(connect.CodeResourceExhausted, errors.New("rate limit exceeded"))
	}
	conversationID, err := uuid.Parse(req.Msg.GetConversationId())
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	xc, err := h.store.LoadContext(ctx, userID, conversationID, uuid.Nil, h.loadBytes)
	if err != nil {
		return connect.NewError(connect.CodeNotFound, err)
	}
	prompt := make([]chat.PromptMessage, 0, len(xc.Branch)+1)
	for _, m := range xc.Branch {
		prompt = append(prompt, chat.PromptMessage{Role: m.Role, Content: m.Content})
	}
	prompt = append(prompt, chat.PromptMessage{Role: chat.RoleUser, Content: req.Msg.GetContent()})
	stream, err := h.provider.Stream(ctx, chat.ModelRequest{Model: h.model, Messages: prompt})
	if err != nil {
		return connect.NewError(connect.CodeUnavailable, err)
	}
	defer stream.Close()
	// The started event goes while the model thinks, as Parley's does.
	seq := int64(1)
	if err := out.Send(&parleyv1.SendMessageResponse{Seq: seq, Event: &parleyv1.SendMessageResponse_Started{Started: &parleyv1.GenerationStarted{Model: h.model}}}); err != nil {
		return err
	}
	for {
		d, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return connect.NewError(connect.CodeUnavailable, err)
		}
		if d.Text == "" {
			continue
		}
		seq++
		if err := out.Send(&parleyv1.SendMessageResponse{Seq: seq, Event: &parleyv1.SendMessageResponse_Delta{Delta: &parleyv1.TextDelta{Text: d.Text}}}); err != nil {
			return err
		}
	}
	seq++
	return out.Send(&parleyv1.SendMessageResponse{Seq: seq, Event: &parleyv1.SendMessageResponse_Completed{Completed: &parleyv1.GenerationCompleted{}}})
}

// user is the user id of a bearer token: its sub claim, decoded on the
// token's first call and remembered.
func (h *relay) user(authorization string) (uuid.UUID, error) {
	token, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok {
		return uuid.Nil, errors.New("no bearer token")
	}
	h.mu.RLock()
	id, ok := h.users[token]
	h.mu.RUnlock()
	if ok {
		return id, nil
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &claims); err != nil {
		return uuid.Nil, err
	}
	id, err := uuid.Parse(claims.Subject)
	if err != nil {
		return uuid.Nil, err
	}
	h.mu.Lock()
	if h.users == nil {
		h.users = map[string]uuid.UUID{}
	}
	h.users[token] = id
	h.mu.Unlock()
	return id, nil
}
