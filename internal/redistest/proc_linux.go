package redistest

import (
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

// startProcess starts cmd so that the kernel kills it when the test process
// dies, even if it dies without running Main or cleanups (a test timeout
// panics and exits at once). Linux sends that signal when the forking
// thread exits, not the process, so every start happens on one goroutine
// locked to its thread that never returns.
func startProcess(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawns = make(chan spawn)
		go func() {
			runtime.LockOSThread()
			for s := range spawns {
				s.done <- s.cmd.Start()
			}
		}()
	})
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	done := make(chan error, 1)
	spawns <- spawn{cmd: cmd, done: done}
	return <-done
}
