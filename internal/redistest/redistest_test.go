package redistest_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parleyhq/parley/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

// newClient returns a client for url that fails fast, so a stopped server
// shows up as an error rather than as retries.
func newClient(tb testing.TB, url string) *redis.Client {
	tb.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatal(err)
	}
	opt.MaxRetries = -1
	client := redis.NewClient(opt)
	tb.Cleanup(func() { _ = client.Close() })
	return client
}

func testContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func TestURL(t *testing.T) {
	t.Parallel()
	url := redistest.URL(t)
	if again := redistest.URL(t); again != url {
		t.Errorf("second URL = %q, want the shared %q", again, url)
	}
	ctx := testContext(t)
	if err := newClient(t, url).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
}

func TestPrefix(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	client := newClient(t, redistest.URL(t))

	var key string
	t.Run("OK", func(t *testing.T) {
		prefix := redistest.Prefix(t)
		if other := redistest.Prefix(t); other == prefix {
			t.Errorf("two calls gave the same prefix %q", prefix)
		}
		key = prefix + "k"
		if err := client.Set(ctx, key, "v", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	})
	// The subtest's cleanups have run by now.
	n, err := client.Exists(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("key %q outlived its test", key)
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	server := redistest.Start(t)
	ctx := testContext(t)
	client := newClient(t, server.URL)
	if err := client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}

	server.Stop()
	if err := client.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Stop succeeded")
	}
	server.Stop() // a second Stop does nothing

	url := server.URL
	server.Restart()
	if server.URL != url {
		t.Errorf("URL after Restart = %q, want %q", server.URL, url)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Restart: %v", err)
	}
	if n, err := client.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS k after Restart = %d, %v; want 0: the data should be gone", n, err)
	}

	server.Restart() // while running
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after second Restart: %v", err)
	}
}

// fatalRecorder stands in for a test so that a helper's Fatal can be
// observed instead of ending the real test.
type fatalRecorder struct {
	testing.TB
	message string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatal(args ...any) {
	r.message = fmt.Sprint(args...)
	runtime.Goexit()
}

func TestStartWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	recorder := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		redistest.Start(recorder)
	}()
	<-done
	for _, want := range []string{"apt-get install redis-server", "brew install redis"} {
		if !strings.Contains(recorder.message, want) {
			t.Errorf("Fatal message %q does not say %q", recorder.message, want)
		}
	}
}
