//go:build unix && !linux

package pglocal

import "syscall"

// setParentDeathSignal does nothing: only Linux can signal a child when its
// parent dies. Elsewhere a server orphaned by a crash keeps running until
// stopped, and the next Start reports it with ErrAlreadyRunning.
func setParentDeathSignal(*syscall.SysProcAttr) {}
