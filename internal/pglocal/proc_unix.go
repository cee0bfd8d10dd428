//go:build unix

package pglocal

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// account is the system user the server runs as when Parley runs as root,
// because initdb and postgres refuse to run as root.
type account struct {
	name     string
	uid, gid uint32
}

// serverAccount returns nil when the server can run as the current user, and
// the postgres system user when the current user is root.
func serverAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	return lookupAccount("postgres")
}

// lookupAccount finds a system user by name; the error says how to create it.
func lookupAccount(name string) (*account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("pglocal: running as root, and PostgreSQL refuses to run as root, so the server runs as the %q user, which does not exist (%v); create it with:\n  useradd --system --user-group --no-create-home --shell /usr/sbin/nologin %s", name, err, name)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pglocal: user %q has non-numeric ids: %w", name, err)
	}
	return &account{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
}

// sysProcAttr puts the server in its own process group, so a Ctrl-C in the
// terminal reaches Parley alone (which then stops the server after its own
// work), and so Stop can kill the postmaster and its children together. It
// switches to acct when not nil; supplementary groups are dropped, which
// canTraverse accounts for. The parent-death signal is set by startChild.
func sysProcAttr(acct *account) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if acct != nil {
		attr.Credential = &syscall.Credential{Uid: acct.uid, Gid: acct.gid}
	}
	return attr
}

// interrupt asks the postmaster for a fast shutdown: roll back open
// transactions, checkpoint, exit.
func interrupt(p *os.Process) error { return p.Signal(syscall.SIGINT) }

// killGroup kills the postmaster and every backend it started (they share its
// process group), so no child keeps the shared memory or the data directory.
func killGroup(p *os.Process) error { return syscall.Kill(-p.Pid, syscall.SIGKILL) }

// processAlive reports whether pid exists. EPERM means it exists but belongs
// to someone else.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// canTraverse reports whether acct may enter dir, judged from its mode bits
// and acct's primary group only (sysProcAttr drops supplementary groups).
func canTraverse(dir string, acct *account) (bool, string, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return false, "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true, "", nil
	}
	perm := fi.Mode().Perm()
	desc := fmt.Sprintf("%v, owner uid %d gid %d", fi.Mode(), st.Uid, st.Gid)
	switch {
	case st.Uid == acct.uid:
		return perm&0o100 != 0, desc, nil
	case st.Gid == acct.gid:
		return perm&0o010 != 0, desc, nil
	default:
		return perm&0o001 != 0, desc, nil
	}
}

// ownerOf returns the uid owning path.
func ownerOf(path string) (uint32, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid, nil
	}
	return 0, nil
}
