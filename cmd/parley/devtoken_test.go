package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/auth"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
)

// TestDevTokenEndpoint checks `parley dev`'s token endpoint against a real
// dev server: its tokens work, for the dev user or any other, an expired
// one is refused, bad parameters answer 400, and the web page's origin
// passes CORS.
func TestDevTokenEndpoint(t *testing.T) {
	t.Parallel()
	s, _ := startDev(t, t.TempDir())
	ctx := context.Background()
	get := func(t *testing.T, query string) (*http.Response, devSession) {
		t.Helper()
		resp, err := http.Get(s.URL + devTokenPath + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sess devSession
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&sess); err != nil {
				t.Fatal(err)
			}
		}
		return resp, sess
	}
	me := func(token string) (*parleyv1.GetMeResponse, error) {
		c := parleyv1connect.NewUserServiceClient(http.DefaultClient, s.URL, connect.WithInterceptors(apitest.Bearer(token)))
		resp, err := c.GetMe(ctx, connect.NewRequest(&parleyv1.GetMeRequest{}))
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	}

	t.Run("DevUser", func(t *testing.T) {
		resp, sess := get(t, "")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("status %d, Cache-Control %q; want 200, no-store", resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
		if sess.User.ID != devUserID.String() || sess.TokenType != "bearer" {
			t.Errorf("session = %+v; want the dev user's bearer token", sess)
		}
		if left := time.Until(time.Unix(sess.ExpiresAt, 0)); left < 59*time.Minute || left > time.Hour+time.Second || sess.ExpiresIn < 3590 {
			t.Errorf("expires in %v (expires_in %d); want an hour", left, sess.ExpiresIn)
		}
		got, err := me(sess.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if got.GetProfile().GetUserId() != devUserID.String() {
			t.Errorf("GetMe answers user %q; want the dev user", got.GetProfile().GetUserId())
		}
	})
	t.Run("OtherUserAndTTL", func(t *testing.T) {
		sub := uuid.New()
		_, sess := get(t, "?sub="+sub.String()+"&ttl=90s")
		if sess.User.ID != sub.String() || sess.ExpiresIn > 90 || sess.ExpiresIn < 85 {
			t.Fatalf("session = %+v; want user %v for 90s", sess, sub)
		}
		got, err := me(sess.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if got.GetProfile().GetUserId() != sub.String() {
			t.Errorf("GetMe answers user %q; want %v", got.GetProfile().GetUserId(), sub)
		}
	})
	t.Run("Expired", func(t *testing.T) {
		_, sess := get(t, "?expired=true")
		if sess.ExpiresAt > time.Now().Add(-time.Hour+time.Minute).Unix() {
			t.Errorf("expires_at %d is not an hour ago", sess.ExpiresAt)
		}
		_, err := me(sess.AccessToken)
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("an expired dev token answered %v; want unauthenticated", err)
		}
	})
	t.Run("BadParameters", func(t *testing.T) {
		for _, q := range []string{"?sub=me", "?ttl=0s", "?ttl=48h", "?ttl=soon", "?expired=maybe"} {
			if resp, _ := get(t, q); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("GET %s: status %d; want 400", q, resp.StatusCode)
			}
		}
	})
	t.Run("CORSForTheWebPage", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, s.URL+devTokenPath, nil)
		req.Header.Set("Origin", "http://localhost:5173")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://localhost:5173" {
			t.Errorf("Access-Control-Allow-Origin = %q; want the Vite dev server's origin, allowed by default in dev", got)
		}
	})
}

// TestDevTokenLoopbackOnly: a caller from another machine, through a
// proxy or tunnel, under another host name (DNS rebinding) or from a page
// of an origin CORS does not allow gets 403 and no token.
func TestDevTokenLoopbackOnly(t *testing.T) {
	t.Parallel()
	key, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := devTokenHandler(key, []string{"http://localhost:5173"})
	call := func(remote, host string, header map[string]string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, devTokenPath, nil)
		req.RemoteAddr, req.Host = remote, host
		for k, v := range header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	refused := []struct {
		name, remote, host string
		header             map[string]string
	}{
		{"OtherMachine", "192.0.2.10:4000", "127.0.0.1:8080", nil},
		{"OtherMachineV6", "[2001:db8::1]:4000", "127.0.0.1:8080", nil},
		{"NoPeerPort", "garbage", "127.0.0.1:8080", nil},
		{"DNSRebinding", "127.0.0.1:4000", "attacker.example:8080", nil},
		{"Tunnel", "127.0.0.1:4000", "127.0.0.1:8080", map[string]string{"X-Forwarded-For": "198.51.100.7"}},
		{"ForwardedHeader", "127.0.0.1:4000", "localhost:8080", map[string]string{"Forwarded": "for=198.51.100.7"}},
		{"OtherOrigin", "127.0.0.1:4000", "localhost:8080", map[string]string{"Origin": "http://localhost:3000"}},
	}
	for _, tt := range refused {
		if rec := call(tt.remote, tt.host, tt.header); rec.Code != http.StatusForbidden || strings.Contains(rec.Body.String(), "access_token") {
			t.Errorf("%s: status %d; want 403 and no token", tt.name, rec.Code)
		}
	}
	for _, ok := range []struct {
		name, remote, host string
		header             map[string]string
	}{
		{"IPv4MappedLoopback", "[::ffff:127.0.0.1]:4000", "127.0.0.1:8080", nil},
		{"Localhost", "[::1]:4000", "localhost:8080", nil},
		{"AllowedPage", "127.0.0.1:4000", "[::1]:8080", map[string]string{"Origin": "http://localhost:5173"}},
	} {
		rec := call(ok.remote, ok.host, ok.header)
		var sess devSession
		if err := json.Unmarshal(rec.Body.Bytes(), &sess); rec.Code != http.StatusOK || err != nil || sess.AccessToken == "" {
			t.Errorf("%s: status %d (%v); want 200 with a token", ok.name, rec.Code, err)
		}
	}
}
