//go:build !unix

package pglocal

import (
	"errors"
	"os"
	"syscall"
)

// errUnsupported is returned by Start where Parley does not manage a local
// server; such developers point DATABASE_URL at a server they run.
var errUnsupported = errors.New("pglocal: starting a local PostgreSQL server is supported on Linux and macOS only; set DATABASE_URL to a server you run")

// account mirrors proc_unix.go's; no account is ever used here.
type account struct {
	name     string
	uid, gid uint32
}

func serverAccount() (*account, error)                   { return nil, errUnsupported }
func sysProcAttr(*account) *syscall.SysProcAttr          { return nil }
func interrupt(p *os.Process) error                      { return p.Kill() }
func killGroup(p *os.Process) error                      { return p.Kill() }
func processAlive(int) bool                              { return false }
func canTraverse(string, *account) (bool, string, error) { return true, "", nil }
func ownerOf(string) (uint32, error)                     { return 0, nil }
