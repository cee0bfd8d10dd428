//go:build bench && linux

package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; 100 on every
// Linux that Go supports.
const clockTicks = 100

// memory returns a process's resident set and its peak, in bytes.
func memory(pid int) (rss, peak int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q: %w", name, value, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak, nil
}

// procStat is what the benchmark reads of /proc/PID/stat.
type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64 // clock ticks
}

func readStat(pid int) (procStat, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. ppid is field 4 of the line; utime, stime, cutime and
	// cstime are fields 14 to 17.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 15 {
		return procStat{}, false
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
	return procStat{ppid: int(n(1)), utime: n(11), stime: n(12), cutime: n(13), cstime: n(14)}, true
}

func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }

// cpuTime is the user plus system CPU a process has used so far.
func cpuTime(pid int) time.Duration {
	st, _ := readStat(pid)
	return ticks(st.utime + st.stime)
}

// treeCPU is the CPU used by a server process and its children, alive or
// exited (the kernel adds a reaped child's time to its parent's), such as a
// PostgreSQL postmaster and its backends. 0 when pid is 0.
func treeCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	root, ok := readStat(pid)
	if !ok {
		return 0
	}
	total := ticks(root.utime + root.stime + root.cutime + root.cstime)
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		child, _ := strconv.Atoi(filepath.Base(dir))
		if st, ok := readStat(child); ok && st.ppid == pid {
			total += ticks(st.utime + st.stime)
		}
	}
	return total
}

// parentOf is a process's parent, 0 if unknown.
func parentOf(pid int) int {
	st, _ := readStat(pid)
	return st.ppid
}

// machineBusy is the CPU time every core of the machine has spent not idle.
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 && i < 8 { // idle and iowait are not busy; guest is inside user
			busy += n
		}
	}
	return ticks(busy)
}

// machineFacts describes the hardware and kernel.
func machineFacts() (cpu, memory, kernel string) {
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
				cpu = strings.TrimSpace(value)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if value, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
				memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(data))
	}
	return cpu, memory, kernel
}

// loadAverage is the one-minute load average.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return "unknown"
	}
	return fields[0]
}
