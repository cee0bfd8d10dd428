package pglocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// initdbTimeout bounds cluster creation; it takes about a second, but a
// cold disk or a busy CI machine can make it much slower.
const initdbTimeout = 2 * time.Minute

// prepareDataDir creates dataDir if needed and reports whether it already
// holds a cluster. An existing directory that is neither empty nor a cluster
// is refused rather than handed to initdb, so a mistyped path never mixes
// Postgres files into someone's project. As root, the new directory is given
// to acct and every parent is checked to be enterable by it.
func prepareDataDir(dataDir string, acct *account) (existing bool, err error) {
	// Parents are created world-enterable: when root creates them for the
	// postgres user (./.parley for `parley dev`), 0700 would lock it out.
	if err := os.MkdirAll(filepath.Dir(dataDir), 0o755); err != nil {
		return false, fmt.Errorf("pglocal: create %s: %w", filepath.Dir(dataDir), err)
	}
	if err := os.Mkdir(dataDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("pglocal: create data directory: %w", err)
	}
	switch _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); {
	case err == nil:
		existing = true
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("pglocal: %w", err)
	default:
		entries, err := os.ReadDir(dataDir)
		if err != nil {
			return false, fmt.Errorf("pglocal: %w", err)
		}
		if len(entries) > 0 {
			return false, fmt.Errorf("pglocal: %s is not empty and holds no PostgreSQL cluster (no PG_VERSION); empty it or choose another data directory", dataDir)
		}
	}
	if acct == nil {
		return existing, nil
	}
	if existing {
		owner, err := ownerOf(dataDir)
		if err != nil {
			return false, fmt.Errorf("pglocal: %w", err)
		}
		if owner != acct.uid {
			return false, fmt.Errorf("pglocal: %s is owned by uid %d, but the server runs as %s (uid %d); fix it with:\n  chown -R %s: %s", dataDir, owner, acct.name, acct.uid, acct.name, dataDir)
		}
	} else if err := os.Chown(dataDir, int(acct.uid), int(acct.gid)); err != nil {
		return false, fmt.Errorf("pglocal: give %s to %s: %w", dataDir, acct.name, err)
	}
	return existing, checkParents(dataDir, acct)
}

// checkParents fails when acct cannot enter some parent of dataDir. Start
// does not loosen permissions on directories it did not create (such as a
// 0700 home directory); it names the directory and the command instead.
func checkParents(dataDir string, acct *account) error {
	for dir := filepath.Dir(dataDir); ; dir = filepath.Dir(dir) {
		ok, desc, err := canTraverse(dir, acct)
		if err != nil {
			return fmt.Errorf("pglocal: %w", err)
		}
		if !ok {
			return fmt.Errorf("pglocal: the server runs as %s (uid %d), which cannot enter %s (%s), a parent of the data directory %s; allow it with:\n  chmod o+x %s\nor choose a data directory elsewhere",
				acct.name, acct.uid, dir, desc, dataDir, dir)
		}
		if parent := filepath.Dir(dir); parent == dir {
			return nil
		}
	}
}

// checkVersion refuses a cluster made by another major version, which
// postgres would reject with a less helpful message.
func checkVersion(ctx context.Context, binDir, dataDir string) error {
	content, err := os.ReadFile(filepath.Join(dataDir, "PG_VERSION"))
	if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	clusterVersion := strings.TrimSpace(string(content))
	serverVersion, err := serverMajor(ctx, binDir)
	if err != nil {
		return err
	}
	if clusterVersion != serverVersion {
		return fmt.Errorf("pglocal: %s holds a PostgreSQL %s cluster, but the server in %s is PostgreSQL %s; install PostgreSQL %s, or delete %s to start over with an empty database",
			dataDir, clusterVersion, binDir, serverVersion, clusterVersion, dataDir)
	}
	return nil
}

// initdb creates a cluster in the empty dataDir. The superuser is "postgres"
// with trust authentication: the server listens on loopback only and holds
// development or test data. The C locale behaves the same on every machine
// (and needs no locale packages); UTF8 matches hosted Postgres.
func initdb(ctx context.Context, binDir, dataDir string, acct *account, ephemeral bool, log io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, initdbTimeout)
	defer cancel()
	args := []string{"-D", dataDir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"}
	if ephemeral {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"), args...)
	out := newLogTail(log, tailSize)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = dataDir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = sysProcAttr(acct)
	// initdb runs a bootstrap postgres of its own; cancel both.
	cmd.Cancel = func() error { return killGroup(cmd.Process) }
	cmd.WaitDelay = 5 * time.Second
	err := startChild(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		// The directory was empty before; empty it again so the next Start
		// does not mistake a half-made cluster for a real one.
		clearDir(dataDir)
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return fmt.Errorf("pglocal: initdb %s: %w\n%s", dataDir, err, out)
	}
	return nil
}

// clearDir removes dir's contents but not dir, which keeps its owner.
func clearDir(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// serverEnv is the environment without PG* variables: PGDATA, PGPORT and
// friends from the user's shell must not redirect the private server.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}
