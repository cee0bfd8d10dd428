package rpc_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
)

// TestHostileBodies: bodies a careless or hostile client sends to a
// Connect endpoint each get a clear error, fast, and change nothing: JSON
// nested far deeper than any message, a field of the wrong type, a body
// that is not JSON, a message over the procedure's size limit, a wrong
// content type. Unknown fields are ignored, as protobuf's compatibility
// rules want (a newer client may send fields this server does not know),
// and cannot smuggle anything in: here an owner id is simply dropped.
func TestHostileBodies(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	user := uuid.New()
	token := env.Token(t, user)
	post := func(t *testing.T, contentType string, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, env.URL+"/parley.v1.ChatService/CreateConversation", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", contentType)
		start := time.Now()
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		_ = json.NewDecoder(res.Body).Decode(&out)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %v", took)
		}
		return res.StatusCode, out.Code + ": " + out.Message
	}
	deep := []byte(`{"title":` + strings.Repeat(`[`, 100_000) + strings.Repeat(`]`, 100_000) + `}`)
	tests := []struct {
		name, contentType string
		body              []byte
		status            int
		want              string
	}{
		{"DeeplyNested", "application/json", deep, http.StatusBadRequest, "invalid_argument"},
		{"WrongType", "application/json", []byte(`{"title":42}`), http.StatusBadRequest, "invalid_argument: unmarshal message: invalid JSON: (line 1:10): invalid value for string field title: 42"},
		{"NotJSON", "application/json", []byte(`title=t`), http.StatusBadRequest, "invalid_argument: unmarshal message: invalid JSON:"},
		{"Empty", "application/json; charset=utf-8", nil, http.StatusBadRequest, "invalid_argument: unmarshal message: the request body is empty"},
		{"OverSizeLimit", "application/json", []byte(`{"title":"` + strings.Repeat("x", 300_000) + `"}`), http.StatusTooManyRequests, "resource_exhausted: message is larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, got := post(t, tt.contentType, tt.body)
			if status != tt.status {
				t.Errorf("status %d (%s); want %d", status, got, tt.status)
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("answer %q; want it to mention %q", got, tt.want)
			}
			// Nothing of the server's code: no Go type, no package.
			if strings.Contains(got, "parleyv1") || strings.Contains(got, "*") || strings.Contains(got, "unmarshal into") {
				t.Errorf("answer %q shows the server's types", got)
			}
		})
	}
	t.Run("WrongContentType", func(t *testing.T) {
		status, _ := post(t, "text/plain", []byte(`{"title":"t"}`))
		if status != http.StatusUnsupportedMediaType {
			t.Errorf("status %d; want 415", status)
		}
	})
	t.Run("UnknownFieldIgnored", func(t *testing.T) {
		other := uuid.New()
		status, got := post(t, "application/json", []byte(`{"title":"mine","userId":"`+other.String()+`","ownerId":"x"}`))
		if status != http.StatusOK {
			t.Fatalf("status %d (%s); want 200", status, got)
		}
		theirs, err := env.ChatClient(t, "connect+json", other).ListConversations(t.Context(), connect.NewRequest(&parleyv1.ListConversationsRequest{}))
		if err != nil || len(theirs.Msg.Conversations) != 0 {
			t.Errorf("an unknown field gave the conversation to another user: %v %v", theirs, err)
		}
	})
	// Only the conversation of the unknown-field body was saved.
	list, err := env.ChatClient(t, "connect+json", user).ListConversations(t.Context(), connect.NewRequest(&parleyv1.ListConversationsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.Msg.Conversations); n != 1 || list.Msg.Conversations[0].Title != "mine" {
		t.Errorf("conversations after the refused bodies: %v; want only \"mine\"", list.Msg.Conversations)
	}
}
