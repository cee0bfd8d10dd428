//go:build bench

package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/redistest"
	"github.com/parleyhq/parley/internal/store"
)

// model is the one model name the fake upstream serves.
const model = "bench-model"

// prompt is what every benchmark user asks.
const prompt = "Tell me something."

// rig is what every phase shares: the binaries built for this run, the fake
// Supabase, the database and the Redis.
type rig struct {
	root       string // the module root
	parleyBin  string
	minimalBin string
	buildTook  time.Duration
	auth       *authority
	dbURL      string
	redisURL   string
	pool       *pgxpool.Pool // on dbURL, for fixtures and the bare baseline
	store      *store.Store
}

func newRig(t *testing.T) *rig {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{root: root, auth: newAuthority(t), dbURL: pgtest.URL(t), redisURL: redistest.URL(t)}
	r.parleyBin, r.minimalBin, r.buildTook = build(t, root)
	r.pool = pgtest.Pool(t)
	r.store = store.New(r.pool)
	findServers(t, r)
	return r
}

// findServers finds the process ids of the run's PostgreSQL and Redis, so
// that CPU snapshots count theirs alone, when they run on this machine.
func findServers(t *testing.T, r *rig) {
	var backend int
	if err := r.pool.QueryRow(t.Context(), "SELECT pg_backend_pid()").Scan(&backend); err == nil {
		if pid := parentOf(backend); pid != 0 && command(pid) == "postgres" {
			servers.postmaster = pid
		}
	}
	info, err := redisClient(t, r.redisURL).Info(t.Context(), "server").Result()
	if err != nil {
		return
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			if pid, _ := strconv.Atoi(v); pid != 0 && command(pid) == "redis-server" {
				servers.redis = pid
			}
		}
	}
}

// command is a process's command name, "" if unknown.
func command(pid int) string {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(comm))
}

// buildFlags are the Dockerfile's: the benchmark measures the binary that
// ships. With perfEnv set, the symbols stay, for perf report.
var buildFlags = func() []string {
	if os.Getenv(perfEnv) != "" {
		return []string{"-trimpath"}
	}
	return []string{"-trimpath", "-ldflags=-s -w"}
}()

// build compiles parley and the minimal server into a temporary directory.
func build(t *testing.T, root string) (parley, minimal string, took time.Duration) {
	t.Helper()
	dir := t.TempDir()
	parley, minimal = filepath.Join(dir, "parley"), filepath.Join(dir, "minimal")
	begin := time.Now()
	for _, b := range []struct {
		out  string
		args []string
	}{
		{parley, []string{"./cmd/parley"}},
		{minimal, []string{"-tags", "bench", "./internal/bench/minimal"}},
	} {
		args := append(append([]string{"build"}, buildFlags...), "-o", b.out)
		cmd := exec.Command("go", append(args, b.args...)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
		}
	}
	return parley, minimal, time.Since(begin)
}

// parleyEnv is the configuration of a parley process of this run: real
// dependencies on loopback, quiet logs, and rate limits far above what the
// benchmark sends so that the limiter is checked on every call but never
// refuses. extra adds or overrides variables, in name, value pairs.
func (r *rig) parleyEnv(dbURL, upstreamURL string, extra ...string) map[string]string {
	env := map[string]string{
		"DATABASE_URL":        dbURL,
		"REDIS_URL":           r.redisURL,
		"SUPABASE_URL":        r.auth.URL,
		"OPENAI_BASE_URL":     upstreamURL,
		"PARLEY_MODELS":       model,
		"LOG_LEVEL":           "warn",
		"LOG_FORMAT":          "json",
		"EVENT_LOG_RETENTION": "1m",
		"RATE_LIMIT_CHAT":     "1000000",
		"RATE_LIMIT_GENERAL":  "1000000",
		"RATE_LIMIT_AGENT":    "1000000",
		"TRUSTED_PROXY_HOPS":  "0",
		// The benchmarks measure capacity; the instance caps are policy.
		"INSTANCE_MAX_GENERATIONS": "100000",
		"INSTANCE_MAX_FOLLOWERS":   "1000000",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	return env
}

// startParley runs `parley serve` and waits until it answers /health.
func (r *rig) startParley(t *testing.T, name string, env map[string]string) *proc {
	t.Helper()
	p := launch(t, name, r.parleyBin, env, "serve")
	p.waitHealthy(t, 30*time.Second)
	return p
}

// authority stands in for Supabase Auth: it serves the JWKS of a dev key
// and signs access tokens with it.
type authority struct {
	URL string
	key *auth.DevKey
}

func newAuthority(t *testing.T) *authority {
	t.Helper()
	key, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/auth/v1/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(key.JWKS())
	}))
	t.Cleanup(srv.Close)
	return &authority{URL: srv.URL, key: key}
}

func (a *authority) token(tb testing.TB, user uuid.UUID) string {
	tb.Helper()
	token, err := a.key.Sign(a.URL+"/auth/v1", user, 3*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return token
}

// benchUser is a signed-in user with conversations that have no answer
// yet, so every answer starts a fresh, titled conversation: the same
// prompt, no title request, no growing history.
type benchUser struct {
	id    uuid.UUID
	token string
	st    *store.Store
	title string

	mu    sync.Mutex
	convs []uuid.UUID
}

// newUsers creates one user per entry of convs, each with that many
// conversations titled title (empty: untitled, so that the first answer
// also asks the model for a title).
func newUsers(t *testing.T, a *authority, st *store.Store, convs []int, title string) []*benchUser {
	t.Helper()
	users := make([]*benchUser, len(convs))
	for i := range users {
		id := uuid.New()
		users[i] = &benchUser{id: id, token: a.token(t, id), st: st, title: title}
	}
	jobs := make(chan *benchUser)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range jobs {
				c, err := st.CreateConversation(t.Context(), u.id, chat.NewConversation{Title: title})
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				u.mu.Lock()
				u.convs = append(u.convs, c.ID)
				u.mu.Unlock()
			}
		}()
	}
	for round := 0; ; round++ {
		sent := false
		for i, u := range users {
			if round < convs[i] {
				jobs <- u
				sent = true
			}
		}
		if !sent {
			break
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("create conversations: %v", err)
	default:
	}
	return users
}

// repeat is n copies of v.
func repeat(n, v int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// conversation returns a conversation without answers, creating one when
// the prepared ones are used up.
func (u *benchUser) conversation(ctx context.Context) (uuid.UUID, error) {
	u.mu.Lock()
	if n := len(u.convs); n > 0 {
		id := u.convs[n-1]
		u.convs = u.convs[:n-1]
		u.mu.Unlock()
		return id, nil
	}
	u.mu.Unlock()
	c, err := u.st.CreateConversation(ctx, u.id, chat.NewConversation{Title: u.title})
	return c.ID, err
}

// client returns a ChatService client over the Connect protocol (binary
// protobuf) that authenticates as the user.
func (u *benchUser) client(hc connect.HTTPClient, url string) parleyv1connect.ChatServiceClient {
	return parleyv1connect.NewChatServiceClient(hc, url, connect.WithInterceptors(apitest.Bearer(u.token)))
}

// h2cClient speaks HTTP/2 without TLS, as Cloud Run's front end does to
// the container with --use-http2.
func h2cClient() *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &protocols}}
}
