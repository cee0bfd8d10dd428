package localproc

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// spawns carries process starts to the one goroutine allowed to fork.
var (
	spawnOnce sync.Once
	spawns    chan spawn
)

type spawn struct {
	cmd  *exec.Cmd
	done chan error
}

// Start starts cmd so that the kernel sends it sig when this process dies,
// however it dies: a crash, a test binary killed by its timeout (which
// exits without running cleanups or TestMain's teardown), a SIGKILL. So no
// orphaned server keeps a port, a data directory or a lock.
//
// The caller chooses sig for the child: os.Interrupt gives PostgreSQL a
// fast shutdown that leaves a persistent data directory consistent; os.Kill
// suits throwaway servers that keep nothing. sig must be a syscall.Signal
// (os.Interrupt and os.Kill are). Other cmd.SysProcAttr fields the caller
// set (a process group, credentials) are kept; Go applies the signal after
// switching credentials, so it survives a switch to another user.
//
// Linux sends the signal when the thread that forked the child exits, not
// the process (https://go.dev/issue/27505), and the Go runtime ends a
// thread whenever a goroutine locked to it returns. So every start happens
// on one goroutine locked to its thread that never returns.
//
// Outside Linux, Start only starts cmd (see start_other.go).
func Start(cmd *exec.Cmd, sig os.Signal) error {
	deathSignal, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("localproc: parent-death signal %v is not a syscall.Signal", sig)
	}
	spawnOnce.Do(func() {
		spawns = make(chan spawn)
		go func() {
			runtime.LockOSThread()
			for sp := range spawns {
				sp.done <- sp.cmd.Start()
			}
		}()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = deathSignal
	done := make(chan error, 1)
	spawns <- spawn{cmd: cmd, done: done}
	return <-done
}
