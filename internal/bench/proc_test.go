//go:build bench

package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/localproc"
	"github.com/parleyhq/parley/internal/testlog"
)

// proc is a server the benchmark runs as a child process: parley serve, or
// the minimal server of the cold-start baseline.
type proc struct {
	name string
	cmd  *exec.Cmd
	// URL is http://127.0.0.1:PORT.
	URL     string
	log     *testlog.Buffer
	started time.Time
	done    chan struct{} // closed when the process has exited
	waitErr error
}

// launch starts bin with args, exactly env (nothing is inherited, so no
// GOGC or GOMAXPROCS of the caller leaks in) and a free PORT, and returns
// at once. The process is stopped when the test ends.
func launch(tb testing.TB, name, bin string, env map[string]string, args ...string) *proc {
	tb.Helper()
	// The port is chosen here rather than read back from parley, which
	// logs its address only at info level, and the benchmark runs it at
	// warn.
	freePort, err := localproc.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	port := strconv.Itoa(freePort)
	vars := []string{"PORT=" + port, "HOST=127.0.0.1"}
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	slices.Sort(vars)
	cmd := exec.Command(bin, args...)
	cmd.Env = vars
	p := &proc{name: name, cmd: cmd, URL: "http://127.0.0.1:" + port, log: &testlog.Buffer{Max: maxLog}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	p.started = time.Now()
	// A benchmark that dies (a timeout, a panic) leaves no parley behind:
	// the kernel kills it with the test process.
	if err := localproc.Start(cmd, os.Kill); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(p.stop)
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM, as Cloud Run does, and kills the process if it has
// not exited within 10 seconds. It may be called more than once.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitHealthy polls GET /health until it answers 200.
func (p *proc) waitHealthy(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			tb.Fatalf("%s exited: %v\n%s", p.name, p.waitErr, p.log.Tail(8<<10))
		default:
		}
		res, err := client.Get(p.URL + "/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb.Fatalf("%s did not answer /health within %v\n%s", p.name, timeout, p.log.Tail(8<<10))
}

// rss is the process's resident memory in bytes.
func (p *proc) rss(tb testing.TB) int64 {
	tb.Helper()
	rss, _, err := memory(p.pid())
	if err != nil {
		tb.Fatalf("%s: read memory: %v", p.name, err)
	}
	return rss
}

// maxLog bounds what a child's log keeps.
const maxLog = 4 << 20

// cpuSnapshot is the CPU time each party of the benchmark has used so far,
// and the whole machine's busy time, to tell how much other processes took.
type cpuSnapshot struct {
	parley, postgres, redis, bench, machine time.Duration
	// client is the external load generator's CPU time (0 when the
	// clients run in this process).
	client time.Duration
}

// servers are the PostgreSQL postmaster and redis-server of the run, whose
// CPU the snapshots count (0 when they are not on this machine).
var servers struct{ postmaster, redis int }

// snapCPU reads the CPU time of the parley process pid (0: none), of the
// run's PostgreSQL (postmaster and backends) and Redis, of this test
// process, and of the machine.
func snapCPU(pid int) cpuSnapshot { return snapCPUWith(pid, 0) }

// snapCPUWith is snapCPU that also reads the CPU time of an external
// client process clientPID (0: none).
func snapCPUWith(pid, clientPID int) cpuSnapshot {
	var s cpuSnapshot
	if pid != 0 {
		s.parley = cpuTime(pid)
	}
	if clientPID != 0 {
		s.client = cpuTime(clientPID)
	}
	s.postgres = treeCPU(servers.postmaster)
	s.redis = treeCPU(servers.redis)
	s.bench = selfCPU()
	s.machine = machineBusy()
	return s
}

func (s cpuSnapshot) sub(o cpuSnapshot) cpuSnapshot {
	return cpuSnapshot{parley: s.parley - o.parley, postgres: s.postgres - o.postgres, redis: s.redis - o.redis, bench: s.bench - o.bench, machine: s.machine - o.machine, client: s.client - o.client}
}

func (s cpuSnapshot) add(o cpuSnapshot) cpuSnapshot {
	return cpuSnapshot{parley: s.parley + o.parley, postgres: s.postgres + o.postgres, redis: s.redis + o.redis, bench: s.bench + o.bench, machine: s.machine + o.machine, client: s.client + o.client}
}

// others is the machine's busy time not charged to the benchmark's
// processes: other processes on the machine, other parley processes of the
// run, and kernel work not charged to any process (some of it loopback
// networking caused by the benchmark itself).
func (s cpuSnapshot) others() time.Duration {
	return max(s.machine-s.parley-s.postgres-s.redis-s.bench-s.client, 0)
}

// per divides every figure by n operations, in microseconds.
func (s cpuSnapshot) per(n int) string {
	if n == 0 || s.machine == 0 {
		return "n/a"
	}
	f := func(d time.Duration) float64 { return usOf(d) / float64(n) }
	client := ""
	if s.client > 0 {
		client = fmt.Sprintf(", load generator %.0f", f(s.client))
	}
	return fmt.Sprintf("parley %.0f, postgres %.0f, redis %.0f, benchmark process %.0f%s; unattributed %.0f", f(s.parley), f(s.postgres), f(s.redis), f(s.bench), client, f(s.others()))
}

// selfCPU is this process's CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
