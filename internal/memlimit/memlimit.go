// Package memlimit gives the Go runtime a soft memory limit from the
// container's, so that the collector runs before the heap outgrows the
// container, rather than letting the heap double (GOGC=100) into an
// out-of-memory kill.
package memlimit

import (
	"bufio"
	"bytes"
	"io/fs"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// Fraction is the share of the container's limit given to the Go runtime:
// the rest is for memory the runtime does not count (the binary's pages,
// thread stacks outside Go, the kernel's buffers charged to the cgroup).
const Fraction = 0.9

// unlimited is the least cgroup v1 value that means no limit (v1 reports
// "no limit" as a page-aligned number close to the largest int64).
const unlimited = 1 << 62

// ContainerLimit returns the memory limit in bytes of the cgroup the
// process runs in, or 0 when it has none or it cannot be read. fsys is the
// root file system (os.DirFS("/")). It reads cgroup v2's memory.max, else
// cgroup v1's memory.limit_in_bytes, of the process's own cgroup (from
// /proc/self/cgroup), and then of the root of the cgroup namespace, which
// is the container's own cgroup under Docker and Cloud Run.
func ContainerLimit(fsys fs.FS) int64 {
	self, _ := fs.ReadFile(fsys, "proc/self/cgroup")
	var v2, v1 string // the process's cgroup paths
	sc := bufio.NewScanner(bytes.NewReader(self))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case hasController(parts[1], "memory"):
			v1 = parts[2]
		}
	}
	candidates := []string{
		path.Join("sys/fs/cgroup", v2, "memory.max"),
		"sys/fs/cgroup/memory.max",
		path.Join("sys/fs/cgroup/memory", v1, "memory.limit_in_bytes"),
		"sys/fs/cgroup/memory/memory.limit_in_bytes",
	}
	for _, name := range candidates {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(data))
		if s == "max" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= unlimited {
			return 0
		}
		return n
	}
	return 0
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// FromContainer sets the runtime's soft memory limit to Fraction of the
// container's limit, unless operatorSet (GOMEMLIMIT is set in the
// environment: the operator's value stands, "off" included) or the
// container has no limit. It returns the limit it set, or 0.
func FromContainer(fsys fs.FS, operatorSet bool) int64 {
	if operatorSet {
		return 0
	}
	limit := ContainerLimit(fsys)
	if limit == 0 {
		return 0
	}
	soft := int64(float64(limit) * Fraction)
	debug.SetMemoryLimit(soft)
	return soft
}
