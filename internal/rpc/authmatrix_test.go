package rpc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/auth"
	_ "github.com/parleyhq/parley/internal/gen/parley/v1" // registers every parley.v1 file
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/pgtest"
)

// TestAuthorizationMatrix calls every RPC of every parley.v1 service, as
// the descriptors list them (a new RPC is covered without anyone adding
// it), over every protocol, with every kind of credential that is not a
// user's session: none, garbage, an expired token, a token of another
// Supabase project, a token signed by a key the project never published,
// the project's anon and service_role API keys (ES256, signed by the
// project's own key, and the legacy HS256 form), and a token without a
// subject. Every call must answer unauthenticated, and none may leave a
// row behind, except the public RPCs (publicRPCs), which read by a secret
// id and answer the empty request's missing id as invalid_argument.
// publicRPCs need no token; server's isPublic lists the same.
var publicRPCs = map[string]bool{
	parleyv1connect.ShareServiceGetSharedConversationProcedure: true,
}

func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	victim := uuid.New() // the sub of every token below
	now := time.Now()
	otherKey, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sign := func(claims map[string]any) string {
		t.Helper()
		token, err := env.Key.SignClaims(claims)
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	must := func(token string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	apiKey := func(role string) map[string]any {
		return map[string]any{"iss": "supabase", "ref": "abcdefghijklmnop", "role": role, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	}
	hs256, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(apiKey("service_role"))).SignedString([]byte("super-secret-jwt-token-with-at-least-32-characters"))
	if err != nil {
		t.Fatal(err)
	}
	credentials := []struct{ name, token string }{
		{"None", ""},
		{"Garbage", "not-a-jwt"},
		{"Expired", must(env.Key.SignIssuedAt(apitest.Issuer, victim, now.Add(-2*time.Hour), time.Hour))},
		{"OtherProject", must(env.Key.Sign("https://otherproject.supabase.co/auth/v1", victim, time.Hour))},
		{"UnpublishedKey", must(otherKey.Sign(apitest.Issuer, victim, time.Hour))},
		{"AnonKey", sign(apiKey("anon"))},
		{"ServiceRoleKey", sign(apiKey("service_role"))},
		{"ServiceRoleOurIssuer", sign(map[string]any{"iss": apitest.Issuer, "sub": victim.String(), "aud": "authenticated", "role": "service_role", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})},
		{"LegacyHS256ServiceRole", hs256},
		{"NoSubject", sign(map[string]any{"iss": apitest.Issuer, "aud": "authenticated", "role": "authenticated", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})},
	}

	var methods []protoreflect.MethodDescriptor
	protoregistry.GlobalFiles.RangeFilesByPackage("parley.v1", func(f protoreflect.FileDescriptor) bool {
		for i := range f.Services().Len() {
			svc := f.Services().Get(i)
			for j := range svc.Methods().Len() {
				methods = append(methods, svc.Methods().Get(j))
			}
		}
		return true
	})
	if len(methods) < 30 {
		t.Fatalf("found %d RPCs in parley.v1; the descriptors did not load", len(methods))
	}

	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			for _, m := range methods {
				procedure := fmt.Sprintf("/%s/%s", m.Parent().FullName(), m.Name())
				for _, cred := range credentials {
					opts := apitest.ClientOptions(protocol)
					if cred.token != "" {
						opts = append(opts, connect.WithInterceptors(apitest.Bearer(cred.token)))
					}
					// An empty message is a valid request of every type, in
					// JSON ("{}") and in binary (no bytes).
					c := connect.NewClient[emptypb.Empty, emptypb.Empty](apitest.HTTPClientFor(protocol), env.URL+procedure, opts...)
					var err error
					if m.IsStreamingServer() {
						var s *connect.ServerStreamForClient[emptypb.Empty]
						if s, err = c.CallServerStream(ctx, connect.NewRequest(&emptypb.Empty{})); err == nil {
							for s.Receive() {
								t.Errorf("%s with %s: received a message", procedure, cred.name)
							}
							err = s.Err()
						}
					} else {
						_, err = c.CallUnary(ctx, connect.NewRequest(&emptypb.Empty{}))
					}
					if publicRPCs[procedure] {
						if connect.CodeOf(err) != connect.CodeInvalidArgument {
							t.Errorf("%s (public) with %s: %v; want invalid_argument", procedure, cred.name, err)
						}
						continue
					}
					if connect.CodeOf(err) != connect.CodeUnauthenticated {
						t.Errorf("%s with %s: %v; want unauthenticated", procedure, cred.name, err)
					}
				}
			}
		})
	}
	t.Cleanup(func() { assertNoRowsOf(t, victim) })
}

// assertNoRowsOf checks that no table of the parley schema holds a row of
// user.
func assertNoRowsOf(t *testing.T, user uuid.UUID) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rows, err := pool.Query(ctx, `SELECT table_name FROM information_schema.columns
		WHERE table_schema = 'parley' AND column_name = 'user_id' ORDER BY table_name`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(tables) < 5 {
		t.Fatalf("only %d tables with a user_id: %v", len(tables), tables)
	}
	for _, table := range tables {
		var n int
		if err := pool.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM parley.%q WHERE user_id = $1`, table), user).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("parley.%s holds %d rows of a user whose every call was refused", table, n)
		}
	}
}
