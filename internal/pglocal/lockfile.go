package pglocal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrAlreadyRunning is returned (wrapped) by Start when a live server already
// holds the data directory, such as one left behind by a Parley that crashed
// on a system without parent-death signals, or a second `parley dev`.
var ErrAlreadyRunning = errors.New("a PostgreSQL server is already running on this data directory")

// clearStaleLock removes postmaster.pid when the server that wrote it is gone
// (a crash, a SIGKILL, a reboot). Postgres removes such a file itself only if
// the PID in it is free; after a reboot or in a container that PID is often
// reused by an unrelated process, and postgres would then refuse to start.
func clearStaleLock(dataDir string) error {
	path := filepath.Join(dataDir, "postmaster.pid")
	holder, err := readLock(dataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("pglocal: read %s: %w", path, err)
	case holder.live:
		return fmt.Errorf("pglocal: %w: PID %d, port %s, data directory %s; stop it with `kill -INT %d`, or use another data directory",
			ErrAlreadyRunning, holder.pid, holder.port, dataDir, holder.pid)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pglocal: remove stale %s: %w", path, err)
	}
	return nil
}

// Running reports whether a live server holds dataDir, judged from its
// postmaster.pid. Cleanup code uses it to leave directories in use alone.
func Running(dataDir string) bool {
	holder, err := readLock(dataDir)
	return err == nil && holder.live
}

// lockHolder describes the server named in a postmaster.pid.
type lockHolder struct {
	pid    int
	port   string
	status string // "starting", "ready", "stopping"; empty before PostgreSQL 10
	live   bool   // the process exists and serves this data directory
}

// readLock parses dataDir's postmaster.pid. Its lines are: PID, data
// directory, start time, port, socket directory, listen address, shared
// memory key, status.
func readLock(dataDir string) (lockHolder, error) {
	content, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return lockHolder{}, err
	}
	lines := strings.Split(string(content), "\n")
	var holder lockHolder
	holder.pid, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || holder.pid <= 0 {
		return lockHolder{}, nil // unreadable: no live holder can be named
	}
	if len(lines) > 3 {
		holder.port = strings.TrimSpace(lines[3])
	}
	if len(lines) > 7 {
		holder.status = strings.TrimSpace(lines[7])
	}
	holder.live = processAlive(holder.pid) && servesDataDir(holder.pid, dataDir)
	return holder, nil
}

// servesDataDir reports whether the live process pid is a postmaster for
// dataDir. A postmaster's working directory is its data directory, which
// Linux shows in /proc; elsewhere, or when /proc cannot be read, any live
// process is assumed to be the server, which errs on the side of not
// deleting a running server's lock.
func servesDataDir(pid int, dataDir string) bool {
	cwd, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "cwd"))
	if err != nil {
		return true
	}
	return sameDir(cwd, dataDir)
}

// sameDir compares two directory paths after resolving symlinks (macOS's
// /var is /private/var).
func sameDir(a, b string) bool {
	if ra, err := filepath.EvalSymlinks(a); err == nil {
		a = ra
	}
	if rb, err := filepath.EvalSymlinks(b); err == nil {
		b = rb
	}
	return filepath.Clean(a) == filepath.Clean(b)
}
