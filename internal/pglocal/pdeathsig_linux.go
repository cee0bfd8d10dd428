package pglocal

import "syscall"

// setParentDeathSignal makes the kernel send the postmaster SIGINT (a fast
// shutdown) if Parley dies without calling Stop — a crash, a test that
// panics or times out — so no orphaned server keeps the data directory
// locked. Go applies it after switching credentials, so it survives the
// switch to the postgres user.
func setParentDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGINT }
