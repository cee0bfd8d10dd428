//go:build bench && !linux

package bench

import (
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// memory asks ps for the resident set; the peak is not available.
func memory(pid int) (rss, peak int64, err error) {
	out, err := exec.Command("ps", "-o", "rss=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return 0, 0, err
	}
	kb, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return kb << 10, 0, err
}

// cpuTime is not measured outside Linux.
func cpuTime(int) time.Duration { return 0 }

// treeCPU is not measured outside Linux.
func treeCPU(int) time.Duration { return 0 }

// parentOf is not known outside Linux.
func parentOf(int) int { return 0 }

// machineBusy is not measured outside Linux.
func machineBusy() time.Duration { return 0 }

func machineFacts() (cpu, memory, kernel string) { return runtime.GOARCH, "unknown", runtime.GOOS }

func loadAverage() string { return "unknown" }
