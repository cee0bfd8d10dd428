//go:build bench

// Command floorunary is the floor of the unary benchmark: the least a
// server can do to answer GetConversation the way Parley's design must,
// and nothing else. Per call it does what Parley does on the wire: read an
// HTTP/1.1 request with a bearer token and a JSON body, look the token up
// in a cache of verified tokens, check the caller's rate limit with one
// EVALSHA of the same GCRA script (redis_rate on go-redis, pipelined when
// checks overlap, as Parley's limiter), read the conversation with one pgx query of the same statement
// (ids as binary uuids), and write the conversation as JSON. No Connect,
// no protobuf, no interceptors, no access log, no error mapping: what it
// costs is the machine's price of those round trips, which is what
// Parley's own figures are compared with.
//
// It listens on 127.0.0.1:$PORT and reads DATABASE_URL and REDIS_URL; its
// pool has Parley's default size (10).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

const getConversationSQL = `SELECT id, user_id, title, system_prompt, model, request_id, active_leaf_id, create_time, update_time FROM parley.conversations
WHERE id = $1 AND user_id = $2`

// conversation is the answer, with the JSON names of Parley's.
type conversation struct {
	ID           string `json:"id"`
	Title        string `json:"title"`
	SystemPrompt string `json:"systemPrompt,omitempty"`
	Model        string `json:"model,omitempty"`
	CreateTime   string `json:"createTime"`
	UpdateTime   string `json:"updateTime"`
}

func main() {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(os.Getenv("DATABASE_URL"))
	if err != nil {
		fail(err)
	}
	cfg.MaxConns = 10 // Parley's default DATABASE_MAX_CONNS
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		fail(err)
	}
	opt, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		fail(err)
	}
	// As Parley's limiter: a check that overlaps others goes out with them
	// as one pipeline, a check alone straight to the connection.
	// Batches of 100, as Parley's (redisconn.AutoPipeline: go-redis
	// pools its batch queues at that capacity).
	client := redis.NewClient(opt)
	apOpt := redis.DefaultBlockingAutoPipelineOptions()
	apOpt.MaxBatchSize = 100
	ap, err := client.AutoPipelineWithOptions(apOpt)
	if err != nil {
		fail(err)
	}
	direct, pipelined := redis_rate.NewLimiter(client), redis_rate.NewLimiter(ap)
	var inFlight atomic.Int64
	limit := redis_rate.PerMinute(1_000_000)
	var tokens sync.Map // token → user id, as a verified-token cache

	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"status":"ok"}`) })
	mux.HandleFunc("POST /parley.v1.ChatService/GetConversation", func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			http.Error(w, `{"code":"unauthenticated"}`, http.StatusUnauthorized)
			return
		}
		user, ok := tokens.Load(token)
		if !ok {
			id, err := subject(token)
			if err != nil {
				http.Error(w, `{"code":"unauthenticated"}`, http.StatusUnauthorized)
				return
			}
			user, _ = tokens.LoadOrStore(token, id)
		}
		userID := user.(uuid.UUID)
		var req struct {
			ConversationID string `json:"conversationId"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
			http.Error(w, `{"code":"invalid_argument"}`, http.StatusBadRequest)
			return
		}
		convID, err := uuid.Parse(req.ConversationID)
		if err != nil {
			http.Error(w, `{"code":"invalid_argument"}`, http.StatusBadRequest)
			return
		}
		limiter := direct
		if inFlight.Add(1) > 1 {
			limiter = pipelined
		}
		res, err := limiter.Allow(r.Context(), "floor:"+userID.String(), limit)
		inFlight.Add(-1)
		if err != nil || res.Allowed == 0 {
			http.Error(w, `{"code":"resource_exhausted"}`, http.StatusTooManyRequests)
			return
		}
		var (
			id, owner, leaf            pgtype.UUID
			title, systemPrompt, model string
			requestID                  *string
			created, updated           time.Time
		)
		if err := pool.QueryRow(r.Context(), getConversationSQL, pgtype.UUID{Bytes: convID, Valid: true}, pgtype.UUID{Bytes: userID, Valid: true}).
			Scan(&id, &owner, &title, &systemPrompt, &model, &requestID, &leaf, &created, &updated); err != nil {
			http.Error(w, `{"code":"not_found"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			Conversation conversation `json:"conversation"`
		}{conversation{
			ID: uuid.UUID(id.Bytes).String(), Title: title, SystemPrompt: systemPrompt, Model: model,
			CreateTime: created.UTC().Format(time.RFC3339Nano), UpdateTime: updated.UTC().Format(time.RFC3339Nano),
		}})
	})
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", os.Getenv("PORT")))
	if err != nil {
		fail(err)
	}
	fail(http.Serve(ln, mux))
}

// subject reads the token's sub claim. The floor trusts its callers: its
// cache stands for Parley's cache of tokens it has verified before, and
// every timed call finds its token there.
func subject(token string) (uuid.UUID, error) {
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &claims); err != nil {
		return uuid.Nil, err
	}
	return uuid.Parse(claims.Subject)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "floorunary:", err)
	os.Exit(1)
}
