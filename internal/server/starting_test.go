package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/server"
)

// serveStarting serves s on a loopback port, as app.New does before the
// service is built, and returns its URL.
func serveStarting(t *testing.T, s *server.Starting) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	running := server.Start(server.NewHTTPServer(s, slog.New(slog.DiscardHandler)), ln)
	t.Cleanup(running.Close)
	return "http://" + ln.Addr().String()
}

// checkHealth calls GET /health and fails unless it answers 200 ok.
func checkHealth(t *testing.T, url string) {
	t.Helper()
	res, err := http.Get(url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || body["status"] != "ok" || body["version"] != "v-test" || res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("GET /health = %d %v %v", res.StatusCode, res.Header, body)
	}
}

// healthCheck calls gRPC health over protocol on url.
func healthCheck(ctx context.Context, url, protocol string) (*grpchealth.CheckResponse, error) {
	c := grpchealth.NewClient(apitest.HTTPClientFor(protocol), url, apitest.ClientOptions(protocol)...)
	return c.Check(ctx, &grpchealth.CheckRequest{})
}

// TestStarting: while the service is being built, /health answers at once
// and RPCs wait for the service instead of being refused; a wait that
// passes, or a build that fails, answers unavailable.
func TestStarting(t *testing.T) {
	t.Parallel()
	healthPath, healthHandler := grpchealth.NewHandler(grpchealth.NewStaticChecker())
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		s := server.NewStarting("v-test", time.Minute)
		url := serveStarting(t, s)
		checkHealth(t, url)
		// HEAD, which the built router's GET pattern also answers.
		if res, err := http.Head(url + "/health"); err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("HEAD /health while starting: %v, %v; want 200 at once", res, err)
		} else {
			res.Body.Close()
		}
		type result struct {
			res *grpchealth.CheckResponse
			err error
		}
		results := make(map[string]chan result)
		for _, protocol := range apitest.Protocols {
			results[protocol] = make(chan result, 1)
			go func() {
				res, err := healthCheck(t.Context(), url, protocol)
				results[protocol] <- result{res, err}
			}()
		}
		time.Sleep(50 * time.Millisecond)
		for protocol, c := range results {
			select {
			case r := <-c:
				t.Fatalf("%s: answered before the service was ready: %v, %v", protocol, r.res, r.err)
			default:
			}
		}
		mux := http.NewServeMux()
		mux.Handle(healthPath, healthHandler)
		mux.Handle("GET /health", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusTeapot)
		}))
		s.Ready(mux)
		for protocol, c := range results {
			if r := <-c; r.err != nil || r.res.Status != grpchealth.StatusServing {
				t.Errorf("%s: %v, %v; want serving", protocol, r.res, r.err)
			}
		}
		// Once ready, /health too is the built handler's.
		res, err := http.Get(url + "/health")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusTeapot {
			t.Errorf("GET /health after Ready = %d, want the built handler's", res.StatusCode)
		}
	})
	t.Run("ErrWaitPassed", func(t *testing.T) {
		t.Parallel()
		url := serveStarting(t, server.NewStarting("v-test", 50*time.Millisecond))
		for _, protocol := range apitest.Protocols {
			if _, err := healthCheck(t.Context(), url, protocol); connect.CodeOf(err) != connect.CodeUnavailable {
				t.Errorf("%s: %v, want unavailable", protocol, err)
			}
		}
		checkHealth(t, url)
	})
	t.Run("ErrFailed", func(t *testing.T) {
		t.Parallel()
		s := server.NewStarting("v-test", time.Minute)
		url := serveStarting(t, s)
		errc := make(chan error, 1)
		go func() {
			_, err := healthCheck(t.Context(), url, "grpc")
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond)
		s.Fail()
		s.Ready(healthHandler) // too late: Fail counted
		if err := <-errc; connect.CodeOf(err) != connect.CodeUnavailable {
			t.Errorf("waiting call: %v, want unavailable", err)
		}
		if _, err := healthCheck(t.Context(), url, "connect+json"); connect.CodeOf(err) != connect.CodeUnavailable {
			t.Errorf("later call: %v, want unavailable", err)
		}
		checkHealth(t, url)
	})
	t.Run("CallerLeaves", func(t *testing.T) {
		t.Parallel()
		url := serveStarting(t, server.NewStarting("v-test", time.Minute))
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		if _, err := healthCheck(ctx, url, "grpc"); !errors.Is(err, context.DeadlineExceeded) && connect.CodeOf(err) != connect.CodeDeadlineExceeded {
			t.Errorf("%v, want the caller's deadline", err)
		}
	})
}
