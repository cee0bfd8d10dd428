package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/db"
	"github.com/parleyhq/parley/internal/apitest"
	"github.com/parleyhq/parley/internal/auth"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/leaktest"
	"github.com/parleyhq/parley/internal/llm/llmtest"
	"github.com/parleyhq/parley/internal/localproc"
	"github.com/parleyhq/parley/internal/pglocal"
	"github.com/parleyhq/parley/internal/redistest"
	"github.com/parleyhq/parley/internal/store"
	"github.com/parleyhq/parley/internal/testlog"
)

// model is the one model the fake upstream serves.
const model = "fake-model"

// parleyBin is `parley`, built with the race detector once for the package.
var parleyBin string

func TestMain(m *testing.M) {
	os.Exit(leaktest.Check(run(m)))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "parley-reliability-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	parleyBin = filepath.Join(dir, "parley")
	// -race: a data race in an instance fails the test that ran it (see
	// instance.check), as in the test binary itself. PARLEY_RACE=0 builds
	// without it, to read memory figures without the detector's overhead.
	args := []string{"build", "-race", "-o", parleyBin, "./cmd/parley"}
	if os.Getenv("PARLEY_RACE") == "0" {
		args = slices.Delete(args, 1, 2)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "reliability: go build -race ./cmd/parley: %v\n%s", err, out)
		return 1
	}
	begin := time.Now()
	code := m.Run()
	if path := os.Getenv("PARLEY_RELIABILITY_REPORT"); path != "" {
		if err := writeReport(path, time.Since(begin), code); err != nil {
			fmt.Fprintln(os.Stderr, "reliability: write the report:", err)
			return 1
		}
	}
	return code
}

// soak reports whether `make soak` runs the suite: longer and heavier.
func soak() bool { return os.Getenv("PARLEY_SOAK") != "" }

// scale picks short for make test and long for make soak.
func scale(short, long int) int {
	if soak() {
		return long
	}
	return short
}

// postgres is a PostgreSQL server of one test's own, which the test may
// stop and start again on the same port and data.
type postgres struct {
	tb   testing.TB
	dir  string
	port int
	srv  *pglocal.Server
	// URL is the migrated database's URL; it stays valid across restarts.
	URL string
}

func startPostgres(tb testing.TB) *postgres {
	tb.Helper()
	dir, err := os.MkdirTemp("", "parley-reliability-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	// The server may run as the postgres user, which must enter dir.
	if err := os.Chmod(dir, 0o711); err != nil {
		tb.Fatal(err)
	}
	p := &postgres{tb: tb, dir: dir}
	p.Start()
	tb.Cleanup(func() {
		if p.srv != nil {
			if err := p.srv.Stop(); err != nil {
				tb.Errorf("postgres: %v", err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if p.URL, err = p.srv.CreateDatabase(ctx, "parley"); err != nil {
		tb.Fatal(err)
	}
	if err := db.MigrateUp(ctx, p.URL, nil); err != nil {
		tb.Fatal(err)
	}
	return p
}

// Start starts the server, on the port of its first start.
func (p *postgres) Start() {
	p.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := pglocal.Start(ctx, pglocal.Options{
		DataDir:   filepath.Join(p.dir, "data"),
		Port:      p.port,
		Ephemeral: true,
		Log:       &bytes.Buffer{},
	})
	if err != nil {
		p.tb.Fatalf("start postgres: %v", err)
	}
	p.srv = srv
	if p.port == 0 {
		u, _ := url.Parse(srv.URL("postgres"))
		p.port, _ = strconv.Atoi(u.Port())
	}
}

// Stop shuts the server down (fast: open transactions are rolled back and
// every connection is closed), as a database restart or failover does.
func (p *postgres) Stop() {
	p.tb.Helper()
	fault("PostgreSQL stopped")
	if err := p.srv.Stop(); err != nil {
		p.tb.Fatalf("stop postgres: %v", err)
	}
	p.srv = nil
}

// supabase stands in for Supabase Auth: it publishes a JWKS, goes down on
// request, and rotates its signing key.
type supabase struct {
	URL     string
	mu      sync.Mutex
	keys    []*auth.DevKey // published, newest last; the newest signs
	down    bool
	fetches atomic.Int64
}

func newSupabase(tb testing.TB) *supabase {
	tb.Helper()
	s := &supabase{}
	s.Rotate(tb)
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func (s *supabase) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/auth/v1/.well-known/jwks.json" {
		http.NotFound(w, r)
		return
	}
	s.fetches.Add(1)
	s.mu.Lock()
	down, keys := s.down, slices.Clone(s.keys)
	s.mu.Unlock()
	if down {
		http.Error(w, "upstream connect error", http.StatusServiceUnavailable)
		return
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	for _, k := range keys {
		var one struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(k.JWKS(), &one); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		set.Keys = append(set.Keys, one.Keys...)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(set)
}

// SetDown makes the JWKS endpoint answer 503 (down) or serve again.
func (s *supabase) SetDown(down bool) {
	if down {
		fault("JWKS down")
	}
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// Rotate publishes a new signing key (a new kid) beside the old ones, and
// signs with it from now on, as Supabase's key rotation does.
func (s *supabase) Rotate(tb testing.TB) {
	tb.Helper()
	key, err := auth.LoadOrCreateDevKey(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	s.mu.Lock()
	if len(s.keys) > 0 {
		fault("signing key rotated")
	}
	s.keys = append(s.keys, key)
	s.mu.Unlock()
}

// Token is an access token for user from the current signing key.
func (s *supabase) Token(tb testing.TB, user uuid.UUID) string {
	tb.Helper()
	s.mu.Lock()
	key := s.keys[len(s.keys)-1]
	s.mu.Unlock()
	token, err := key.Sign(s.URL+"/auth/v1", user, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return token
}

// instance is one `parley serve` process.
type instance struct {
	name string
	env  []string
	URL  string
	log  *testlog.Buffer

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// start launches the process with exactly env and waits for /health.
func (p *instance) start(tb testing.TB) {
	tb.Helper()
	p.cmd = exec.Command(parleyBin, "serve")
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.done = make(chan struct{})
	if err := localproc.Start(p.cmd, os.Kill); err != nil {
		tb.Fatalf("start %s: %v", p.name, err)
	}
	go func(cmd *exec.Cmd, done chan struct{}) {
		p.waitErr = cmd.Wait()
		close(done)
	}(p.cmd, p.done)
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			tb.Fatalf("%s exited at start: %v\n%s", p.name, p.waitErr, p.log.Tail(tailLog))
		default:
		}
		if res, err := client.Get(p.URL + "/health"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("%s did not answer /health within 30s\n%s", p.name, p.log.Tail(tailLog))
}

// running reports whether the process has not exited.
func (p *instance) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Terminate sends SIGTERM, as Cloud Run does before it stops an instance,
// and waits for the exit; it returns how the process ended.
func (p *instance) Terminate(tb testing.TB) error {
	tb.Helper()
	fault("SIGTERM")
	return p.terminate(tb)
}

// terminate is Terminate without counting a fault: the end of a test.
func (p *instance) terminate(tb testing.TB) error {
	tb.Helper()
	if !p.running() {
		return p.waitErr
	}
	begin := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		tb.Errorf("%s did not exit within 30s of SIGTERM", p.name)
	}
	tb.Logf("%s exited %v after SIGTERM", p.name, time.Since(begin).Round(time.Millisecond))
	return p.waitErr
}

// check fails tb when the instance's output shows a data race or a panic.
func (p *instance) check(tb testing.TB) {
	tb.Helper()
	out := p.log.String()
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
		if strings.Contains(out, bad) {
			tb.Errorf("%s printed %q:\n%s", p.name, bad, p.log.Tail(tailLog))
			return
		}
	}
	// Cloud Logging reads one JSON object per line: a library that prints
	// plain text (go-redis did, on a failed dial) breaks that.
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "gc ") && os.Getenv("PARLEY_INSTANCE_GODEBUG") != "" {
			continue
		}
		if !json.Valid([]byte(line)) {
			tb.Errorf("%s logged a line that is not JSON: %q", p.name, line)
			return
		}
	}
}

// maxLog bounds what an instance's log keeps; tailLog is how much of it
// a failure quotes.
const (
	maxLog  = 8 << 20
	tailLog = 12 << 10
)

// cluster is N parley instances sharing one PostgreSQL and one Redis, with
// their fake Supabase and fake model upstream.
type cluster struct {
	t        *testing.T
	PG       *postgres
	Redis    *redistest.Server
	Supabase *supabase
	Model    *llmtest.Server
	Inst     []*instance
	// Store reads and writes the cluster's database directly, for checks.
	Store *store.Store
	Pool  *pgxpool.Pool
	next  atomic.Uint64
	// http holds one client per protocol, shared by every call as a real
	// client's connections are: a client per call would leave the
	// instances a thousand idle connections to keep.
	http map[string]*http.Client
}

// options shape a cluster.
type options struct {
	Instances int // default 3
	// Env adds or overrides the instances' variables, name then value.
	Env []string
	// Model configures the fake upstream.
	Model []llmtest.Option
	// NoRedis runs the instances without Redis.
	NoRedis bool
	// Deferred instances are created but not started (start them with
	// c.Start(i)).
	Deferred []int
}

func newCluster(t *testing.T, o options) *cluster {
	t.Helper()
	track(t)
	if o.Instances == 0 {
		o.Instances = 3
	}
	c := &cluster{t: t, PG: startPostgres(t), Supabase: newSupabase(t), Model: llmtest.NewServer(t, o.Model...)}
	if !o.NoRedis {
		c.Redis = redistest.Start(t)
	}
	pool, err := pgxpool.New(context.Background(), c.PG.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	c.Pool, c.Store = pool, store.New(pool)
	c.http = map[string]*http.Client{}
	for _, p := range apitest.Protocols {
		client := apitest.HTTPClientFor(p)
		c.http[p] = client
		t.Cleanup(client.CloseIdleConnections)
	}
	env := map[string]string{
		"HOST":               "127.0.0.1",
		"DATABASE_URL":       c.PG.URL,
		"SUPABASE_URL":       c.Supabase.URL,
		"OPENAI_BASE_URL":    c.Model.URL,
		"PARLEY_MODELS":      model,
		"LOG_FORMAT":         "json",
		"LOG_LEVEL":          "info",
		"SHUTDOWN_TIMEOUT":   "4s",
		"TRUSTED_PROXY_HOPS": "0",
		"DATABASE_MAX_CONNS": "8",
		// Tests count rate limits only where they say so.
		"RATE_LIMIT_CHAT":    "100000",
		"RATE_LIMIT_GENERAL": "100000",
		"RATE_LIMIT_AGENT":   "100000",
		"GORACE":             "halt_on_error=0 exitcode=66",
		"GODEBUG":            os.Getenv("PARLEY_INSTANCE_GODEBUG"),
	}
	if c.Redis != nil {
		env["REDIS_URL"] = c.Redis.URL
	}
	for i := 0; i+1 < len(o.Env); i += 2 {
		env[o.Env[i]] = o.Env[i+1]
	}
	for i := range o.Instances {
		port, err := localproc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		vars := []string{"PORT=" + strconv.Itoa(port)}
		for k, v := range env {
			vars = append(vars, k+"="+v)
		}
		slices.Sort(vars)
		p := &instance{name: fmt.Sprintf("parley-%d", i), env: vars, URL: "http://127.0.0.1:" + strconv.Itoa(port), log: &testlog.Buffer{Max: maxLog}}
		c.Inst = append(c.Inst, p)
		t.Cleanup(func() {
			if p.running() {
				_ = p.terminate(t)
			}
			p.check(t)
			if dir := os.Getenv("PARLEY_INSTANCE_LOGS"); dir != "" {
				// For a developer reading what an instance did.
				_ = os.WriteFile(filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+p.name+".log"), []byte(p.log.String()), 0o644)
			}
			if t.Failed() {
				t.Logf("%s log:\n%s", p.name, p.log.Tail(tailLog))
			}
		})
	}
	for i, p := range c.Inst {
		if !slices.Contains(o.Deferred, i) {
			p.start(t)
		}
	}
	return c
}

// Start starts instance i (again).
func (c *cluster) Start(i int) {
	c.t.Helper()
	c.Inst[i].start(c.t)
}

// Any picks the next instance, round robin.
func (c *cluster) Any() int { return int(c.next.Add(1)-1) % len(c.Inst) }

// protocol is the protocol clients of instance i speak: the suite spreads
// Connect JSON, Connect binary, gRPC and gRPC-Web over the instances.
func protocol(i int) string { return apitest.Protocols[i%len(apitest.Protocols)] }

func (c *cluster) opts(i int, token string) []connect.ClientOption {
	return append(apitest.ClientOptions(protocol(i)), connect.WithInterceptors(counting{}, apitest.Bearer(token)))
}

// Chat is a chat client of instance i for token's user.
func (c *cluster) Chat(i int, token string) parleyv1connect.ChatServiceClient {
	return parleyv1connect.NewChatServiceClient(c.http[protocol(i)], c.Inst[i].URL, c.opts(i, token)...)
}

// Agent is an agent client of instance i for token's user.
func (c *cluster) Agent(i int, token string) parleyv1connect.AgentServiceClient {
	return parleyv1connect.NewAgentServiceClient(c.http[protocol(i)], c.Inst[i].URL, c.opts(i, token)...)
}

// User is a user client of instance i for token's user.
func (c *cluster) User(i int, token string) parleyv1connect.UserServiceClient {
	return parleyv1connect.NewUserServiceClient(c.http[protocol(i)], c.Inst[i].URL, c.opts(i, token)...)
}
