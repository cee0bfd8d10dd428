package rpc_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/config"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// fakeS3 is gofakes3 (in memory) behind a check gofakes3 lacks: a
// presigned request is refused once X-Amz-Date + X-Amz-Expires has passed
// by the clock the test moves.
type fakeS3 struct {
	URL     string
	backend *s3mem.Backend
	mu      sync.Mutex
	skew    time.Duration // added to the real time
}

func newFakeS3(t *testing.T, bucket string) *fakeS3 {
	t.Helper()
	f := &fakeS3{backend: s3mem.New()}
	if err := f.backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	s3 := gofakes3.New(f.backend).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if date, expires := q.Get("X-Amz-Date"), q.Get("X-Amz-Expires"); date != "" {
			at, err1 := time.Parse("20060102T150405Z", date)
			secs, err2 := strconv.Atoi(expires)
			if err1 != nil || err2 != nil || q.Get("X-Amz-Signature") == "" || f.now().After(at.Add(time.Duration(secs)*time.Second)) {
				http.Error(w, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", http.StatusForbidden)
				return
			}
		}
		s3.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *fakeS3) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Now().Add(f.skew)
}

func (f *fakeS3) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.skew += d
}

func (f *fakeS3) objects(t *testing.T, bucket string) int {
	t.Helper()
	list, err := f.backend.ListBucket(bucket, &gofakes3.Prefix{}, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	return len(list.Contents)
}

// TestAttachmentsObjectStorage: with a bucket configured the content goes
// to object storage (not the database), the model still sees it,
// GetAttachment answers a presigned URL that works until it expires, and
// deleting the conversation, or the user, deletes the objects.
func TestAttachmentsObjectStorage(t *testing.T) {
	t.Parallel()
	const bucket = "attachments"
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			s3 := newFakeS3(t, bucket)
			fake := llmtest.NewServer(t)
			env := attachmentEnv(t, fake, apitest.Options{AttachmentStorage: config.AttachmentStorage{
				Bucket: bucket, Endpoint: s3.URL, Region: "us-east-1",
				AccessKeyID: "test-key", SecretAccessKey: "test-secret", URLTTL: time.Minute,
			}})
			ctx := testCtx(t)
			owner := uuid.New()
			c := env.ChatClient(t, protocol, owner)
			pic := testPNG(t)

			conv := create(t, c, "s3")
			evs, err := sendWith(ctx, c, conv.Id, fakeModel, &parleyv1.AttachmentUpload{Name: "dot.png", Content: pic})
			if err != nil {
				t.Fatal(err)
			}
			a := started(t, evs).GetUserMessage().Attachments[0]
			if n := s3.objects(t, bucket); n != 1 {
				t.Fatalf("%d objects in the bucket, want 1", n)
			}
			var inDB int
			if err := env.Store.Pool().QueryRow(ctx, `SELECT count(*) FROM parley.attachments WHERE id = $1 AND content IS NULL AND object_key IS NOT NULL`, a.Id).Scan(&inDB); err != nil || inDB != 1 {
				t.Fatalf("row with an object key and no content: %d (%v)", inDB, err)
			}
			if got := lastUserMessage(t, fake); len(got.Images) != 1 || !bytes.Equal(got.Images[0].Data, pic) {
				t.Fatalf("the model received images %+v", got.Images)
			}

			res, err := env.AttachmentClient(t, protocol, owner).GetAttachment(ctx, connect.NewRequest(&parleyv1.GetAttachmentRequest{AttachmentId: a.Id}))
			if err != nil {
				t.Fatal(err)
			}
			if res.Msg.Url == "" || len(res.Msg.Content) != 0 {
				t.Fatalf("GetAttachment: url %q, %d bytes of content", res.Msg.Url, len(res.Msg.Content))
			}
			if exp := res.Msg.UrlExpireTime.AsTime(); exp.Before(time.Now()) || exp.After(time.Now().Add(time.Minute+time.Second)) {
				t.Errorf("url_expire_time %v, want within a minute", exp)
			}
			get := func() (int, []byte) {
				resp, err := http.Get(res.Msg.Url)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, b
			}
			if status, body := get(); status != http.StatusOK || !bytes.Equal(body, pic) {
				t.Fatalf("signed URL: %d, %d bytes", status, len(body))
			}
			_, err = env.AttachmentClient(t, protocol, uuid.New()).GetAttachment(ctx, connect.NewRequest(&parleyv1.GetAttachmentRequest{AttachmentId: a.Id}))
			wantCode(t, err, connect.CodeNotFound, "")
			s3.advance(time.Minute + time.Second)
			if status, _ := get(); status != http.StatusForbidden {
				t.Errorf("signed URL after its expiry: %d, want 403", status)
			}

			if _, err := c.DeleteConversation(ctx, connect.NewRequest(&parleyv1.DeleteConversationRequest{ConversationId: conv.Id})); err != nil {
				t.Fatal(err)
			}
			if n := s3.objects(t, bucket); n != 0 {
				t.Errorf("%d objects left after the conversation was deleted", n)
			}

			conv = create(t, c, "s3 again")
			if _, err := sendWith(ctx, c, conv.Id, textModel, &parleyv1.AttachmentUpload{Name: "a.txt", Content: []byte("hello")}); err != nil {
				t.Fatal(err)
			}
			if n := s3.objects(t, bucket); n != 1 {
				t.Fatalf("%d objects, want 1", n)
			}
			if _, err := env.UserClient(t, protocol, owner).DeleteMe(ctx, connect.NewRequest(&parleyv1.DeleteMeRequest{})); err != nil {
				t.Fatal(err)
			}
			if n := s3.objects(t, bucket); n != 0 {
				t.Errorf("%d objects left after DeleteMe", n)
			}
		})
	}
}
