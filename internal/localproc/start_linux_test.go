package localproc_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"github.com/parleyhq/parley/internal/leaktest"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parleyhq/parley/internal/localproc"
)

// The test binary plays the processes of the parent-death test when
// roleEnv names a role; see TestStartParentDeath.
const (
	roleEnv   = "LOCALPROC_TEST_ROLE"
	signalEnv = "LOCALPROC_TEST_SIGNAL"
)

func init() {
	// The parent keeps its main goroutine on the main thread, so the
	// goroutine that starts the child runs on another thread, which the Go
	// runtime really ends (it parks the main thread instead).
	if os.Getenv(roleEnv) == "parent" {
		runtime.LockOSThread()
	}
}

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(leaktest.Check(m.Run()))
	case "parent":
		if err := playParent(os.Getenv(signalEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "parent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "child":
		playChild()
	case "idle":
		// Wait for stdin to close: a child that only has to exist.
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, "unknown role", os.Getenv(roleEnv))
	os.Exit(2)
}

// playParent starts a child with Start from a goroutine whose thread then
// ends, checks that the child was not signalled by that, and exits with the
// child still running, which should signal it.
func playParent(signalName string) error {
	sig := map[string]os.Signal{"interrupt": os.Interrupt, "kill": os.Kill}[signalName]
	if sig == nil {
		return fmt.Errorf("unknown signal %q", signalName)
	}
	ackR, ackW, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"=child")
	cmd.Stdout = os.Stdout // the test's pipe: the child reports there after we exit
	cmd.ExtraFiles = []*os.File{ackW}

	// A goroutine that returns while locked to its thread makes the Go
	// runtime end that thread: had the child been forked from it, Linux
	// would signal the child now.
	type started struct {
		tid int
		err error
	}
	result := make(chan started, 1)
	go func() {
		runtime.LockOSThread()
		result <- started{tid: syscall.Gettid(), err: localproc.Start(cmd, sig)}
	}()
	r := <-result
	if r.err != nil {
		return r.err
	}
	ackW.Close()
	if err := waitThreadGone(r.tid); err != nil {
		return err
	}
	// Linux queues the parent-death signal before the thread leaves
	// /proc, so any signal from the thread's end is now pending in the
	// child and would reach it before SIGUSR1.
	acks := bufio.NewReader(ackR)
	if err := ackR.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	if err := expectLine(acks, "ready"); err != nil {
		return err
	}
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return err
	}
	return expectLine(acks, "usr1")
}

// waitThreadGone polls until thread tid of this process has ended.
func waitThreadGone(tid int) error {
	path := "/proc/self/task/" + strconv.Itoa(tid)
	for range 2000 {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("thread %d did not end", tid)
}

func expectLine(r *bufio.Reader, want string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("waiting for %q from the child: %w", want, err)
	}
	if got := strings.TrimSpace(line); got != want {
		return fmt.Errorf("child said %q, want %q", got, want)
	}
	return nil
}

// playChild reports every signal it gets on stdout and exits on the first
// that is not SIGUSR1; it acknowledges readiness and SIGUSR1 on fd 3.
// It does not return.
func playChild() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	ack := os.NewFile(3, "ack")
	fmt.Fprintln(ack, "ready")
	// A child that outlives its parent (the failure the test looks for)
	// still ends, after the test has given up on it.
	giveUp := time.After(time.Minute)
	for {
		select {
		case sig := <-signals:
			fmt.Println("signal:", sig)
			if sig != syscall.SIGUSR1 {
				os.Exit(0)
			}
			fmt.Fprintln(ack, "usr1")
		case <-giveUp:
			os.Exit(3)
		}
	}
}

// TestStartParentDeath runs a parent process that starts a child with
// Start and exits without stopping it: the child must get the chosen
// signal then, and not earlier when the thread that started it ended.
func TestStartParentDeath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		signal string
		want   []string // what the child reports before it dies
	}{
		// The child can report an interrupt, and exits on it.
		{name: "Interrupt", signal: "interrupt", want: []string{"signal: user defined signal 1", "signal: interrupt"}},
		// SIGKILL cannot be caught: the child dies without a word.
		{name: "Kill", signal: "kill", want: []string{"signal: user defined signal 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			outR, outW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer outR.Close()
			var stderr bytes.Buffer
			parent := exec.Command(os.Args[0])
			parent.Env = append(os.Environ(), roleEnv+"=parent", signalEnv+"="+tt.signal)
			parent.Stdout = outW
			parent.Stderr = &stderr
			err = parent.Start()
			outW.Close() // the parent and the child hold the write end now
			if err != nil {
				t.Fatal(err)
			}
			if err := parent.Wait(); err != nil {
				t.Fatalf("parent: %v\n%s", err, stderr.String())
			}
			// EOF comes once the child has died and closed its stdout.
			if err := outR.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(outR)
			if err != nil {
				t.Fatalf("reading the child's output (%q): %v; the child outlived its parent", out, err)
			}
			var got []string
			for line := range strings.Lines(string(out)) {
				got = append(got, strings.TrimSpace(line))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("what the child reported (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStartKeepsSysProcAttr: pglocal relies on its process group (and,
// as root, its credentials) surviving Start.
func TestStartKeepsSysProcAttr(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"=idle")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := localproc.Start(cmd, os.Interrupt); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("idle child: %v", err)
		}
	}()
	if got := cmd.SysProcAttr.Pdeathsig; got != syscall.SIGINT {
		t.Errorf("Pdeathsig = %v, want %v", got, syscall.SIGINT)
	}
	pgid, err := syscall.Getpgid(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if pgid != cmd.Process.Pid {
		t.Errorf("child's process group is %d, want its own (%d): Setpgid was lost", pgid, cmd.Process.Pid)
	}
}

// noteSignal is an os.Signal that is not a syscall.Signal, like Plan 9's.
type noteSignal string

func (n noteSignal) String() string { return string(n) }
func (noteSignal) Signal()          {}

func TestStartErrNotSyscallSignal(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"=idle")
	err := localproc.Start(cmd, noteSignal("hangup"))
	if err == nil || !strings.Contains(err.Error(), "not a syscall.Signal") {
		t.Errorf("Start with a non-syscall signal: %v; want it refused", err)
	}
	if cmd.Process != nil {
		cmd.Process.Kill()
		t.Error("Start started the process anyway")
	}
}
