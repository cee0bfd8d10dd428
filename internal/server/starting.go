package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultStartWait is how long a request that arrives while the service is
// still being built waits for it (see Starting) before it is answered 503.
// Building takes milliseconds: the bound only matters if it hangs.
const DefaultStartWait = 10 * time.Second

// healthHandler answers GET /health: a liveness answer that touches no
// dependency, the same before and after the service is built.
func healthHandler(version string) http.HandlerFunc {
	body, _ := json.Marshal(map[string]string{"status": "ok", "version": version})
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(body)
	}
}

// Starting is the root handler of a service whose listener is open but
// whose handler is still being built. Until Ready, it answers GET and HEAD /health
// itself (the process is alive and its port answers, which is all
// /health has ever said) and holds every other request, RPCs included,
// until the handler is ready, the caller leaves, or the wait passes: a
// request that arrives early is served a few milliseconds late, never
// refused. After Ready every request, /health included, goes to the
// handler, at the cost of one atomic load.
//
// A request still waiting when the wait passes, or when Fail is called
// because the service could not be built, is answered 503 Service
// Unavailable with Retry-After: 1, which Connect, gRPC and gRPC-Web
// clients all read as the code unavailable.
type Starting struct {
	handler atomic.Pointer[http.Handler]
	health  http.Handler
	wait    time.Duration
	done    chan struct{} // closed by Ready or Fail
	once    sync.Once
}

// NewStarting returns a Starting that answers /health with version (Version
// when empty) and holds other requests for up to wait (DefaultStartWait
// when zero).
func NewStarting(version string, wait time.Duration) *Starting {
	if version == "" {
		version = Version()
	}
	if wait <= 0 {
		wait = DefaultStartWait
	}
	return &Starting{health: healthHandler(version), wait: wait, done: make(chan struct{})}
}

// Ready hands over to h: the requests waiting and every later one go to
// it. Only the first of Ready and Fail counts.
func (s *Starting) Ready(h http.Handler) {
	s.once.Do(func() {
		s.handler.Store(&h)
		close(s.done)
	})
}

// Fail answers the requests waiting, and every later one but /health, 503:
// the service will not be built.
func (s *Starting) Fail() { s.once.Do(func() { close(s.done) }) }

// ServeHTTP implements http.Handler.
func (s *Starting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := s.handler.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	s.serveStarting(w, r)
}

// serveStarting serves a request that came before Ready or Fail. It is
// apart from ServeHTTP so that a running service's requests, streams that
// last an answer among them, carry none of its frame.
func (s *Starting) serveStarting(w http.ResponseWriter, r *http.Request) {
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.URL.Path == "/health" {
		s.health.ServeHTTP(w, r)
		return
	}
	timer := time.NewTimer(s.wait)
	defer timer.Stop()
	select {
	case <-s.done:
		if h := s.handler.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
	case <-timer.C:
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, "the service is starting", http.StatusServiceUnavailable)
}

// Running is an http.Server serving in the background (see Start).
type Running struct {
	srv  *http.Server
	errc chan error
}

// Start serves srv on ln in the background, at once: Wait shuts it down.
func Start(srv *http.Server, ln net.Listener) *Running {
	r := &Running{srv: srv, errc: make(chan error, 1)}
	go func() { r.errc <- srv.Serve(ln) }()
	return r
}

// Wait serves until ctx ends, then shuts down gracefully: it stops
// accepting, lets in-flight requests finish for up to timeout, and closes
// whatever is left. It returns early with the server's error if serving
// fails.
func (r *Running) Wait(ctx context.Context, timeout time.Duration, log *slog.Logger) error {
	select {
	case err := <-r.errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", timeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	err := r.srv.Shutdown(shutdownCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("grace period over; closing remaining connections")
		err = r.srv.Close()
	}
	if serveErr := <-r.errc; !errors.Is(serveErr, http.ErrServerClosed) && serveErr != nil {
		return serveErr
	}
	return err
}

// Close stops serving at once, closing every connection (a no-op after
// Wait's shutdown).
func (r *Running) Close() { r.srv.Close() }

// Serve runs srv on ln until ctx ends, then shuts down gracefully (see
// Running.Wait).
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, timeout time.Duration, log *slog.Logger) error {
	return Start(srv, ln).Wait(ctx, timeout, log)
}
