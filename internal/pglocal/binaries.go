package pglocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNoBinaries is returned (wrapped, with install instructions) when no
// PostgreSQL server binaries are found. Callers that can fall back to an
// existing server test for it with errors.Is.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, postgres) not found")

// searchPatterns are the places packagers put server binaries that are
// usually not on PATH: Debian/Ubuntu keep them per major version under
// /usr/lib/postgresql, Homebrew keeps versioned kegs unlinked.
var searchPatterns = []string{
	"/usr/lib/postgresql/*/bin",
	"/usr/local/pgsql/bin",
	"/opt/homebrew/opt/postgresql*/bin",
	"/usr/local/opt/postgresql*/bin",
}

// FindBinaries returns the directory holding the initdb and postgres
// executables: the one on PATH if there is one, otherwise the newest version
// found under searchPatterns. Symlinks are resolved so the directory is the
// installation's own bin directory. The error wraps ErrNoBinaries and says
// what to install.
func FindBinaries() (dir string, err error) {
	var candidates []string
	for _, name := range []string{"pg_ctl", "initdb", "postgres"} {
		if p, err := exec.LookPath(name); err == nil {
			candidates = append(candidates, filepath.Dir(p))
		}
	}
	for _, pattern := range searchPatterns {
		matches, _ := filepath.Glob(pattern) // only ErrBadPattern, impossible for these constants
		candidates = append(candidates, newestFirst(matches)...)
	}
	return firstWithBinaries(candidates)
}

// firstWithBinaries returns the first candidate directory that holds both
// server executables, after resolving symlinks.
func firstWithBinaries(candidates []string) (string, error) {
	for _, dir := range candidates {
		if resolved, ok := binDir(dir); ok {
			return resolved, nil
		}
	}
	return "", fmt.Errorf(`%w in PATH or in %s.
Install PostgreSQL's server package:
  Debian/Ubuntu: apt-get install postgresql
  macOS:         brew install postgresql@16
or set DATABASE_URL to a server you already run, e.g.
  DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'`,
		ErrNoBinaries, strings.Join(searchPatterns, ", "))
}

// binDir reports whether dir holds initdb and postgres. It resolves
// symlinks, because /usr/local/bin or Homebrew's bin often links to the real
// installation, and initdb must find its share/ directory beside the real
// binaries.
func binDir(dir string) (string, bool) {
	initdb, err := filepath.EvalSymlinks(filepath.Join(dir, "initdb"))
	if err != nil {
		return "", false
	}
	real := filepath.Dir(initdb)
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(real, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return "", false
		}
	}
	return real, true
}

// versionDigits and versionLine compile when `parley dev` looks for a
// server, not at every start of `parley serve`.
var versionDigits = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\d+`) })

// newestFirst orders installation directories by the version number in their
// path (postgresql/16 before postgresql/15, postgresql@17 before @16), so the
// newest server is used when several are installed. Paths without a number
// (Homebrew's unversioned "postgresql") come last.
func newestFirst(dirs []string) []string {
	version := func(dir string) int {
		n, _ := strconv.Atoi(versionDigits().FindString(filepath.Base(filepath.Dir(dir))))
		return n
	}
	sorted := slices.Clone(dirs)
	slices.SortStableFunc(sorted, func(a, b string) int { return version(b) - version(a) })
	return sorted
}

// serverMajor returns the major version of the postgres binary in binDir
// ("15", or "9.6" for old servers), the same form initdb writes to PG_VERSION.
func serverMajor(ctx context.Context, binDir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// --version is answered before postgres refuses to run as root.
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("pglocal: %s --version: %w", filepath.Join(binDir, "postgres"), err)
	}
	return majorOf(string(out))
}

var versionLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\(PostgreSQL\) (\d+)(\.\d+)?`) })

// majorOf extracts the major version from `postgres --version` output, e.g.
// "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)".
func majorOf(versionOutput string) (string, error) {
	m := versionLine().FindStringSubmatch(versionOutput)
	if m == nil {
		return "", fmt.Errorf("pglocal: unrecognised postgres --version output %q", strings.TrimSpace(versionOutput))
	}
	if n, _ := strconv.Atoi(m[1]); n < 10 {
		return m[1] + m[2], nil // before 10 the major version had two parts
	}
	return m[1], nil
}
