//go:build bench

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The unary rows' external client: internal/bench/loadgen, a process of
// its own speaking HTTP/1.1 JSON with keep-alive, one connection per caller,
// so that Parley's calls per second are not bounded by a client sharing the
// benchmark's process and its HTTP/2 work.

// loadgen is a running load generator.
type loadgen struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// loadgenCall is one caller's request, as loadgen reads it.
type loadgenCall struct {
	Path   string `json:"path"`
	Token  string `json:"token"`
	Body   string `json:"body"`
	Expect string `json:"expect"`
}

// buildBenchTool compiles a command of this package's tree (with the bench
// tag and the Dockerfile's flags) into a temporary directory.
func buildBenchTool(t *testing.T, root, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	args := append(append([]string{"build", "-tags", "bench"}, buildFlags...), "-o", out, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out
}

// startLoadgen starts bin against the server at url with one connection
// per call, and waits until every connection is open.
func startLoadgen(t *testing.T, bin, url string, calls []loadgenCall) *loadgen {
	t.Helper()
	cmd := exec.Command(bin, strings.TrimPrefix(url, "http://"))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lg := &loadgen{cmd: cmd, in: in, out: bufio.NewScanner(stdout)}
	t.Cleanup(lg.stop)
	for _, c := range calls {
		b, _ := json.Marshal(c)
		fmt.Fprintf(in, "%s\n", b)
	}
	fmt.Fprintln(in)
	if !lg.out.Scan() || lg.out.Text() != "ready" {
		t.Fatalf("loadgen did not start: %q %v", lg.out.Text(), lg.out.Err())
	}
	return lg
}

func (lg *loadgen) stop() {
	fmt.Fprintln(lg.in, "quit")
	lg.in.Close()
	done := make(chan struct{})
	go func() { lg.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		lg.cmd.Process.Kill()
		<-done
	}
}

// run calls for d and reports it as callLoop does, with the CPU of the
// server pid and of the load generator.
func (lg *loadgen) run(d time.Duration, pid int) unaryRun {
	before := snapCPUWith(pid, lg.cmd.Process.Pid)
	fmt.Fprintf(lg.in, "go %s\n", d)
	var s struct {
		Calls   int64    `json:"calls"`
		Seconds float64  `json:"seconds"`
		Errors  []string `json:"errors"`
	}
	if !lg.out.Scan() {
		return unaryRun{errs: []string{fmt.Sprintf("loadgen ended: %v", lg.out.Err())}}
	}
	after := snapCPUWith(pid, lg.cmd.Process.Pid)
	if err := json.Unmarshal(lg.out.Bytes(), &s); err != nil {
		return unaryRun{errs: []string{fmt.Sprintf("loadgen said %q: %v", lg.out.Text(), err)}}
	}
	return unaryRun{perSecond: float64(s.Calls) / s.Seconds, calls: s.Calls, errs: s.Errors, cpu: after.sub(before)}
}

// externalCalls are the callers' requests for the two unary RPCs, in
// Connect's JSON form.
func externalCalls(cs callers) (get, list []loadgenCall) {
	for i, u := range cs.users {
		id := cs.convs[i].String()
		get = append(get, loadgenCall{
			Path: "/parley.v1.ChatService/GetConversation", Token: u.token,
			Body: fmt.Sprintf(`{"conversationId":%q}`, id), Expect: fmt.Sprintf(`"id":%q`, id),
		})
		list = append(list, loadgenCall{
			Path: "/parley.v1.ChatService/ListConversations", Token: u.token,
			Body: `{}`, Expect: `"nextPageToken":"`,
		})
	}
	return get, list
}

// externalTarget is a server called by a load generator.
type externalTarget struct {
	lg  *loadgen
	pid int
}

// compareExternal is compare with targets called by load generators: the
// same rounds and warm-up; in each round the baseline and every target run
// once, the order turning from round to round. It returns one comparison
// per target, all against the same baseline runs.
func compareExternal(ctx context.Context, name string, base func(ctx context.Context, i int) error, targets ...externalTarget) []comparison {
	cmps := make([]comparison, len(targets))
	for i := range cmps {
		cmps[i].name = name
	}
	warm, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	callLoop(warm, 0, base)
	cancel()
	for _, tg := range targets {
		tg.lg.run(500*time.Millisecond, tg.pid)
	}
	n := len(targets) + 1
	for round := range unaryRounds {
		var baseRun unaryRun
		runs := make([]unaryRun, len(targets))
		for k := range n {
			j := (k + round) % n // 0 is the baseline
			if j == 0 {
				baseRun = callLoop(ctx, 0, base)
				continue
			}
			runs[j-1] = targets[j-1].lg.run(unaryWindow, targets[j-1].pid)
		}
		for i := range cmps {
			cmps[i].base = append(cmps[i].base, baseRun)
			cmps[i].target = append(cmps[i].target, runs[i])
		}
	}
	return cmps
}
