//go:build !linux

package redistest

import "os/exec"

// startProcess starts cmd. Outside Linux there is no parent-death signal, so
// a test process killed before Main or its cleanups run leaves the server
// behind.
func startProcess(cmd *exec.Cmd) error { return cmd.Start() }
