package auth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	whoamiProcedure       = "/parley.test.v1.AuthTestService/Whoami"
	whoamiStreamProcedure = "/parley.test.v1.AuthTestService/WhoamiStream"
	healthProcedure       = "/parley.test.v1.AuthTestService/Health"
	anonymous             = "anonymous"
)

// callerName is what the test handlers answer: the user id the interceptor
// put on the context, or "anonymous".
func callerName(ctx context.Context) string {
	if id, ok := UserID(ctx); ok {
		return id.String()
	}
	return anonymous
}

// newAuthTestServer serves a unary, a server-streaming and a public procedure
// behind the interceptor, over HTTP/2 with TLS so gRPC works too.
func newAuthTestServer(tb testing.TB, v *Verifier, log *slog.Logger) *httptest.Server {
	tb.Helper()
	isPublic := func(procedure string) bool { return procedure == healthProcedure }
	opts := connect.WithInterceptors(NewInterceptor(v, isPublic, log))
	unary := func(ctx context.Context, _ *connect.Request[emptypb.Empty]) (*connect.Response[wrapperspb.StringValue], error) {
		return connect.NewResponse(wrapperspb.String(callerName(ctx))), nil
	}
	stream := func(ctx context.Context, _ *connect.Request[emptypb.Empty], s *connect.ServerStream[wrapperspb.StringValue]) error {
		for range 2 {
			if err := s.Send(wrapperspb.String(callerName(ctx))); err != nil {
				return err
			}
		}
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle(whoamiProcedure, connect.NewUnaryHandler(whoamiProcedure, unary, opts))
	mux.Handle(healthProcedure, connect.NewUnaryHandler(healthProcedure, unary, opts))
	mux.Handle(whoamiStreamProcedure, connect.NewServerStreamHandler(whoamiStreamProcedure, stream, opts))
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	return srv
}

// callUnary calls procedure with token (none if empty) and returns the answer.
func callUnary(tb testing.TB, srv *httptest.Server, protocol connect.ClientOption, procedure, token string) (string, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	defer cancel()
	client := connect.NewClient[emptypb.Empty, wrapperspb.StringValue](srv.Client(), srv.URL+procedure, protocol)
	req := connect.NewRequest(&emptypb.Empty{})
	if token != "" {
		req.Header().Set("Authorization", "Bearer "+token)
	}
	res, err := client.CallUnary(ctx, req)
	if err != nil {
		return "", err
	}
	return res.Msg.GetValue(), nil
}

// callStream calls the streaming procedure and returns the messages joined
// by commas, or the stream's error (which arrives in the end-of-stream frame).
func callStream(tb testing.TB, srv *httptest.Server, protocol connect.ClientOption, token string) (string, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	defer cancel()
	client := connect.NewClient[emptypb.Empty, wrapperspb.StringValue](srv.Client(), srv.URL+whoamiStreamProcedure, protocol)
	req := connect.NewRequest(&emptypb.Empty{})
	if token != "" {
		req.Header().Set("Authorization", "Bearer "+token)
	}
	stream, err := client.CallServerStream(ctx, req)
	if err != nil {
		return "", err
	}
	defer stream.Close()
	var got []string
	for stream.Receive() {
		got = append(got, stream.Msg().GetValue())
	}
	return strings.Join(got, ","), stream.Err()
}

func TestInterceptor(t *testing.T) {
	t.Parallel()
	dev, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const iss = "http://127.0.0.1:54321/auth/v1"
	v, err := NewStaticVerifier(Config{Issuer: iss}, dev.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	srv := newAuthTestServer(t, v, nil)

	userID := uuid.New()
	good, err := dev.Sign(iss, userID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	wrongIssuer, err := dev.Sign("https://other.supabase.co/auth/v1", userID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	protocols := []struct {
		name   string
		option connect.ClientOption
	}{
		{"Connect", connect.WithProtoJSON()},
		{"GRPC", connect.WithGRPC()},
		{"GRPCWeb", connect.WithGRPCWeb()},
	}
	tests := []struct {
		name string
		call func(tb testing.TB, protocol connect.ClientOption) (string, error)
		want string // empty: want Unauthenticated
	}{
		{"OKUnary", func(tb testing.TB, p connect.ClientOption) (string, error) {
			return callUnary(tb, srv, p, whoamiProcedure, good)
		}, userID.String()},
		{"OKStream", func(tb testing.TB, p connect.ClientOption) (string, error) {
			return callStream(tb, srv, p, good)
		}, userID.String() + "," + userID.String()},
		{"OKPublicNoToken", func(tb testing.TB, p connect.ClientOption) (string, error) {
			return callUnary(tb, srv, p, healthProcedure, "")
		}, anonymous},
		{"ErrUnaryNoToken", func(tb testing.TB, p connect.ClientOption) (string, error) {
			return callUnary(tb, srv, p, whoamiProcedure, "")
		}, ""},
		{"ErrStreamNoToken", func(tb testing.TB, p connect.ClientOption) (string, error) {
			return callStream(tb, srv, p, "")
		}, ""},
		{"ErrUnaryBadToken", func(tb testing.TB, p connect.ClientOption) (string, error) {
			return callUnary(tb, srv, p, whoamiProcedure, wrongIssuer)
		}, ""},
		{"ErrStreamBadToken", func(tb testing.TB, p connect.ClientOption) (string, error) {
			return callStream(tb, srv, p, wrongIssuer)
		}, ""},
	}
	for _, protocol := range protocols {
		t.Run(protocol.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					got, err := tt.call(t, protocol.option)
					if tt.want != "" {
						if err != nil {
							t.Fatalf("call: %v", err)
						}
						if got != tt.want {
							t.Errorf("handler saw caller %q; want %q", got, tt.want)
						}
						return
					}
					if code := connect.CodeOf(err); code != connect.CodeUnauthenticated {
						t.Fatalf("call error = %v (code %v); want unauthenticated", err, code)
					}
					var connectErr *connect.Error
					if errors.As(err, &connectErr) && connectErr.Message() != unauthenticatedMessage {
						t.Errorf("error message = %q; want the generic %q", connectErr.Message(), unauthenticatedMessage)
					}
					if got != "" {
						t.Errorf("handler ran and sent %q despite the failed check", got)
					}
				})
			}
		})
	}
}

// syncBuffer lets concurrent handler goroutines log into one buffer.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestInterceptorLogsReasonNotToken(t *testing.T) {
	t.Parallel()
	dev, err := LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const iss = "http://127.0.0.1:54321/auth/v1"
	v, err := NewStaticVerifier(Config{Issuer: iss}, dev.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	srv := newAuthTestServer(t, v, slog.New(slog.NewTextHandler(&logs, nil)))
	token, err := dev.Sign("https://other.supabase.co/auth/v1", uuid.New(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := callUnary(t, srv, connect.WithGRPC(), whoamiProcedure, token); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("call error = %v; want unauthenticated", err)
	}
	got := logs.String()
	for _, want := range []string{"level=WARN", "procedure=" + whoamiProcedure, "invalid issuer"} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	// Any of the three parts would let a reader replay or forge the token.
	for i, part := range strings.Split(token, ".") {
		if strings.Contains(got, part) {
			t.Errorf("log contains token part %d:\n%s", i, got)
		}
	}
}

func TestClaimsContext(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		want := Claims{UserID: uuid.New(), Role: "authenticated"}
		ctx := WithClaims(t.Context(), want)
		got, ok := ClaimsFrom(ctx)
		if !ok || got != want {
			t.Errorf("ClaimsFrom = %+v, %v; want %+v, true", got, ok, want)
		}
		if id, ok := UserID(ctx); !ok || id != want.UserID {
			t.Errorf("UserID = %v, %v; want %v, true", id, ok, want.UserID)
		}
	})
	t.Run("ErrNoClaims", func(t *testing.T) {
		t.Parallel()
		if _, ok := ClaimsFrom(t.Context()); ok {
			t.Error("ClaimsFrom found claims on a bare context")
		}
		if id, ok := UserID(t.Context()); ok || id != uuid.Nil {
			t.Errorf("UserID = %v, %v on a bare context; want Nil, false", id, ok)
		}
	})
}
