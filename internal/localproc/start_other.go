//go:build !linux

package localproc

import (
	"os"
	"os/exec"
)

// Start starts cmd. Outside Linux it sets no parent-death signal (FreeBSD
// has one, but nobody runs Parley's servers there to test it), so sig is
// unused and a child orphaned by a crash keeps running until it is stopped:
// pglocal reports such a server with ErrAlreadyRunning on the next start; a
// test's redis-server or a benchmark's parley stays behind.
func Start(cmd *exec.Cmd, sig os.Signal) error { return cmd.Start() }
