package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// output collects what the program writes, safely for concurrent writers.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// urlPattern finds the address in the "listening" log line (JSON or text).
var urlPattern = regexp.MustCompile(`listening.*?url"?[=:]"?(http://127\.0\.0\.1:\d+)`)

// started runs the program in-process and returns the base URL it reports,
// its outputs, and a stop function that cancels it (as SIGTERM does) and
// returns run's error.
type started struct {
	URL    string
	Stdout *output
	Stderr *output
	stop   context.CancelFunc
	done   chan struct{} // closed when run returns
	err    error         // run's error, once done is closed
}

func (s *started) Stop(tb testing.TB) error {
	tb.Helper()
	s.stop()
	select {
	case <-s.done:
		return s.err
	case <-time.After(10 * time.Second):
		tb.Fatal("the server did not stop within 10s of SIGTERM")
		return nil
	}
}

func start(tb testing.TB, env map[string]string, args ...string) *started {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{Stdout: &output{}, Stderr: &output{}, stop: cancel, done: make(chan struct{})}
	getenv := func(k string) string { return env[k] }
	go func() {
		defer close(s.done)
		s.err = run(ctx, append([]string{"parley"}, args...), getenv, s.Stdout, s.Stderr)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m := urlPattern.FindStringSubmatch(s.Stdout.String() + s.Stderr.String()); m != nil {
			s.URL = m[1]
			tb.Cleanup(func() { s.stop(); <-s.done })
			return s
		}
		select {
		case <-s.done:
			tb.Fatalf("parley %s exited: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), s.err, s.Stdout, s.Stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	tb.Fatalf("parley %s printed no URL within 60s\nstdout: %s\nstderr: %s", strings.Join(args, " "), s.Stdout, s.Stderr)
	return nil
}

func TestRunUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"ErrNoCommand", nil, nil, "missing command"},
		{"ErrUnknownCommand", []string{"fly"}, nil, `unknown command "fly"`},
		{"ErrServeConfig", []string{"serve"}, map[string]string{"PORT": "x"}, "DATABASE_URL is required"},
		{"ErrDevInProduction", []string{"dev"}, map[string]string{"PARLEY_ENV": "production"}, "refuses to run in production"},
		{"ErrTokenSub", []string{"token", "--sub", "bob"}, nil, "--sub must be a user UUID"},
		{"ErrMigrateVerb", []string{"migrate", "sideways"}, map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x"}, "use up, down or status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr output
			err := run(context.Background(), append([]string{"parley"}, tt.args...), func(k string) string { return tt.env[k] }, &stdout, &stderr)
			var ue usageError
			if !errors.As(err, &ue) || exitCode(err) != 2 {
				t.Fatalf("err = %v, want a usage error (exit status 2)", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to mention %q", err, tt.want)
			}
		})
	}
	t.Run("ServeReportsEveryProblem", func(t *testing.T) {
		err := run(context.Background(), []string{"parley", "serve"}, func(k string) string {
			return map[string]string{"PORT": "x", "LOG_LEVEL": "loud"}[k]
		}, &output{}, &output{})
		for _, want := range []string{"PORT", "LOG_LEVEL", "DATABASE_URL", "SUPABASE_URL"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want it to mention %s", err, want)
			}
		}
	})
}

// TestCommandHelp: `parley <command> -h` prints that command's usage and
// flags on stdout and exits 0, without running the command.
func TestCommandHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"Serve", []string{"serve", "-h"}, []string{"Usage: parley serve", "environment"}},
		{"Dev", []string{"dev", "-h"}, []string{"Usage: parley dev [flags]", "-data-dir", "where dev state"}},
		{"DevLongForm", []string{"dev", "--help"}, []string{"Usage: parley dev [flags]", "-data-dir"}},
		{"Token", []string{"token", "-h"}, []string{"Usage: parley token [flags]", "-sub", "-data-dir", "-ttl", "(default 24h0m0s)"}},
		{"TokenAfterOtherFlags", []string{"token", "--sub", "x", "-help"}, []string{"Usage: parley token [flags]", "-sub"}},
		{"Migrate", []string{"migrate", "-h"}, []string{"Usage: parley migrate up|down|status"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr output
			// PARLEY_ENV=production would make dev refuse to run: help
			// must come before any configuration is read.
			getenv := func(k string) string { return map[string]string{"PARLEY_ENV": "production"}[k] }
			err := run(context.Background(), append([]string{"parley"}, tt.args...), getenv, &stdout, &stderr)
			if err != nil || exitCode(err) != 0 {
				t.Fatalf("err = %v (exit %d), want nil (exit 0)\nstderr: %s", err, exitCode(err), stderr.String())
			}
			for _, want := range tt.want {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout does not mention %q:\n%s", want, stdout.String())
				}
			}
		})
	}
}
