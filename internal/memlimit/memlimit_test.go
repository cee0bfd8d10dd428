package memlimit

import (
	"runtime/debug"
	"testing"
	"testing/fstest"
)

func TestContainerLimit(t *testing.T) {
	t.Parallel()
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name string
		fs   fstest.MapFS
		want int64
	}{
		{"V2OwnCgroup", fstest.MapFS{
			"proc/self/cgroup":                          file("0::/app.slice/parley\n"),
			"sys/fs/cgroup/app.slice/parley/memory.max": file("536870912\n"),
			"sys/fs/cgroup/memory.max":                  file("max\n"),
		}, 512 << 20},
		{"V2NamespaceRoot", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("1073741824\n"),
		}, 1 << 30},
		{"V2Max", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("max\n"),
		}, 0},
		{"V1", fstest.MapFS{
			"proc/self/cgroup": file("5:cpuacct,cpu:/\n4:memory:/docker/abc\n0::/\n"),
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": file("268435456\n"),
		}, 256 << 20},
		{"V1Unlimited", fstest.MapFS{
			"proc/self/cgroup": file("4:memory:/process_api/x\n0::/\n"),
			"sys/fs/cgroup/memory/process_api/x/memory.limit_in_bytes": file("9223372036854771712\n"),
		}, 0},
		{"Nothing", fstest.MapFS{}, 0},
		{"Garbage", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("lots\n"),
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ContainerLimit(tt.fs); got != tt.want {
				t.Errorf("ContainerLimit = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestFromContainer sets the runtime's limit (not in parallel: it is the
// process's), and leaves the operator's GOMEMLIMIT alone.
func TestFromContainer(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	limited := fstest.MapFS{
		"proc/self/cgroup":         &fstest.MapFile{Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": &fstest.MapFile{Data: []byte("1000000000\n")},
	}
	if got := FromContainer(limited, true); got != 0 || debug.SetMemoryLimit(-1) != before {
		t.Errorf("with GOMEMLIMIT set: set %d, limit now %d, want it left at %d", got, debug.SetMemoryLimit(-1), before)
	}
	if got := FromContainer(fstest.MapFS{}, false); got != 0 || debug.SetMemoryLimit(-1) != before {
		t.Errorf("without a container limit: set %d", got)
	}
	if got, now := FromContainer(limited, false), debug.SetMemoryLimit(-1); got != 900000000 || now != 900000000 {
		t.Errorf("FromContainer set %d, runtime limit %d, want 900000000 for both", got, now)
	}
}
