// Package redistest gives tests a Redis to talk to: the one named by
// REDIS_URL, or a throwaway redis-server started from the local binary.
//
// A test package that calls URL or Prefix must stop the shared server when
// its tests end, which Go offers no hook for except TestMain:
//
//	func TestMain(m *testing.M) { redistest.Main(m) }
//
// URL fails the test if that line is missing, so a forgotten TestMain shows
// up at once instead of as a leaked process. On Linux the kernel also kills
// every server this package started when the test process dies, so a test
// binary killed by a timeout leaves none behind.
//
// Every test in a process shares one server, and with REDIS_URL every
// process shares the same Redis too, so tests isolate their data by key
// prefix (Prefix), not by database number: Redis has only 16 databases by
// default, and pub/sub channels are global across databases anyway.
//
// Tests that stop or restart Redis to exercise outages need a server of
// their own: Start gives one, always from the local binary.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parleyhq/parley/internal/leaktest"
)

// envURL names the variable that points tests at an existing Redis.
const envURL = "REDIS_URL"

var (
	// mainUsed records that the package's TestMain calls Main, without
	// which the shared server would outlive the test process.
	mainUsed atomic.Bool

	shared struct {
		sync.Mutex
		started bool
		server  *Server // nil when REDIS_URL is used
		url     string
		err     error
	}
)

// Main runs the package's tests and then stops the shared redis-server, if
// URL started one. Call it from TestMain in every package that uses URL or
// Prefix. It does not return.
func Main(m *testing.M) {
	teardown := Setup()
	code := m.Run()
	teardown()
	os.Exit(leaktest.Check(code))
}

// Setup is Main's first half for a TestMain that also runs other helpers:
//
//	func TestMain(m *testing.M) { pgtest.MainWith(m, redistest.Setup) }
//
// The returned func stops the shared Redis, if one was started.
func Setup() func() {
	mainUsed.Store(true)
	return stopShared
}

func stopShared() {
	shared.Lock()
	if shared.server != nil {
		if err := shared.server.stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		_ = os.RemoveAll(shared.server.dir)
		shared.server = nil
	}
	shared.Unlock()
}

// URL returns the URL of a Redis for tests. With REDIS_URL set it returns
// that, after checking that Redis answers; otherwise it starts one
// redis-server for the whole test process on first use. The Redis is shared
// with other tests: keep every key and channel under Prefix(tb).
func URL(tb testing.TB) string {
	tb.Helper()
	if !mainUsed.Load() {
		tb.Fatal("redistest: the package's tests must stop the shared Redis when they end; add\n" +
			"\tfunc TestMain(m *testing.M) { redistest.Main(m) }")
	}
	shared.Lock()
	defer shared.Unlock()
	if !shared.started {
		// One attempt per process: if Redis is missing, every test fails
		// with the same message instead of retrying a slow start each time.
		shared.started = true
		shared.url, shared.server, shared.err = openShared()
	}
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.url
}

func openShared() (string, *Server, error) {
	// The test helper is the one place outside config that reads the
	// environment: tests choose their Redis, the service never does.
	if url := os.Getenv(envURL); url != "" {
		return url, nil, ping(url)
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return "", nil, fmt.Errorf("redistest: %w", err)
	}
	server := &Server{dir: dir}
	if err := server.start(); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, err
	}
	return server.URL, server, nil
}

// ping checks that the Redis at url answers, so a wrong REDIS_URL fails
// with advice rather than as a timeout deep inside the first test.
func ping(url string) error {
	opt, err := redis.ParseURL(url)
	if err != nil {
		// The URL may hold a password, so it is not repeated here.
		return fmt.Errorf("redistest: %s is not a valid Redis URL; fix or unset it", envURL)
	}
	client := redis.NewClient(opt)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redistest: the Redis at %s=%s does not answer (%v); start it, or unset %s to use a throwaway redis-server",
			envURL, opt.Addr, err, envURL)
	}
	return nil
}

// Prefix returns a key and channel prefix that no other test uses, and
// deletes the keys under it from URL(tb)'s Redis when the test ends, so a
// shared development Redis is left as it was found.
func Prefix(tb testing.TB) string {
	tb.Helper()
	url := URL(tb)
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	prefix := "test:" + sanitize(tb.Name()) + ":" + hex.EncodeToString(nonce[:]) + ":"
	tb.Cleanup(func() {
		if err := deleteKeys(url, prefix); err != nil {
			tb.Errorf("redistest: delete keys under %q: %v", prefix, err)
		}
	})
	return prefix
}

// sanitize keeps test names usable inside a SCAN pattern, where * ? [ and
// \ would match more than the test's own keys.
func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		default:
			return '_'
		}
	}, name)
}

func deleteKeys(url, prefix string) error {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	client := redis.NewClient(opt)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	return client.Unlink(ctx, keys...).Err()
}

// SilentURL is the URL of a server on loopback that accepts connections,
// holds them open and never answers: a Redis that is up but stalled. It
// and its connections close when the test ends.
func SilentURL(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			tb.Cleanup(func() { conn.Close() }) // hold it open, say nothing
		}
	}()
	return "redis://" + ln.Addr().String()
}
