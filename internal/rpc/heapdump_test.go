//go:build linux && amd64 && !race

package rpc_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// waitingStack is one goroutine of a heap dump: the functions on its
// stack, outermost last, and how many bytes of stack it uses.
type waitingStack struct {
	funcs []string
	sizes []uint64 // each frame's size, in funcs' order
	used  uint64
}

// has reports whether fn (a full function name) is on the stack.
func (w waitingStack) has(fn string) bool {
	for _, f := range w.funcs {
		if f == fn {
			return true
		}
	}
	return false
}

// dumpStacks writes a heap dump of this process (runtime/debug's
// WriteHeapDump, the world stopped) and reads its goroutines back: for
// each, its frames and the stack it uses, measured as the runtime does
// when it decides to shrink a stack (from the goroutine's saved stack
// pointer to the top of its stack, stack.hi - sched.sp).
func dumpStacks(t *testing.T) []waitingStack {
	t.Helper()
	path := filepath.Join(t.TempDir(), "heap.dump")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	debug.WriteHeapDump(f.Fd())
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stacks, err := readStacks(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		t.Fatalf("reading the heap dump: %v", err)
	}
	return stacks
}

// The records of a heap dump (runtime/heapdump.go, format "go1.7 heap
// dump") that come before its goroutines' stacks, and the stacks'.
const (
	dumpObject     = 1
	dumpType       = 3
	dumpGoroutine  = 4
	dumpStackFrame = 5
	dumpParams     = 6
	dumpItab       = 8
	dumpDefer      = 14
	dumpPanic      = 15
)

// readStacks reads a heap dump's goroutines; it stops at the first record
// after them (the OS threads).
func readStacks(r *bufio.Reader) ([]waitingStack, error) {
	const header = "go1.7 heap dump\n"
	h := make([]byte, len(header))
	if _, err := io.ReadFull(r, h); err != nil || string(h) != header {
		return nil, fmt.Errorf("not a heap dump: %q", h)
	}
	var err error
	num := func() uint64 {
		if err != nil {
			return 0
		}
		var v uint64
		v, err = binary.ReadUvarint(r)
		return v
	}
	nums := func(n int) {
		for range n {
			num()
		}
	}
	str := func() string {
		n := num()
		if err != nil {
			return ""
		}
		b := make([]byte, n)
		_, err = io.ReadFull(r, b)
		return string(b)
	}
	skip := func() {
		if n := num(); err == nil {
			_, err = r.Discard(int(n))
		}
	}
	fields := func() {
		for err == nil && num() != 0 {
			num()
		}
	}
	var (
		stacks []waitingStack
		g      *waitingStack
		gsp    uint64 // the goroutine's saved stack pointer
	)
	for err == nil {
		switch tag := num(); tag {
		case dumpParams:
			nums(4)
			str()
			str()
			num()
		case dumpItab:
			nums(2)
		case dumpType:
			nums(2)
			str()
			num()
		case dumpObject:
			num()
			skip()
			fields()
		case dumpGoroutine:
			stacks = append(stacks, waitingStack{})
			g = &stacks[len(stacks)-1]
			num()
			gsp = num()
			nums(6) // id, go statement, status, system, background, waiting since
			str()
			nums(4)
		case dumpStackFrame:
			if g == nil {
				return nil, errors.New("a stack frame before any goroutine")
			}
			sp := num()
			nums(2)
			size := num()
			if err == nil {
				_, err = r.Discard(int(size))
			}
			nums(3)
			name := str()
			g.funcs = append(g.funcs, name)
			g.sizes = append(g.sizes, size)
			fields()
			g.used = sp + size - gsp
			if name == "runtime.goexit" {
				// The outermost frame: a goroutine starts 4 words below
				// its stack's top (runtime/proc.go, newproc1's totalSize),
				// and goexit's frame holds 1 of them.
				g.used = sp + 4*8 - gsp
			}
		case dumpDefer:
			nums(7)
		case dumpPanic:
			nums(6)
		default:
			if err == nil && len(stacks) == 0 {
				return nil, fmt.Errorf("record %d before any goroutine", tag)
			}
			return stacks, err
		}
	}
	return nil, err
}

// stacksWith returns the stacks that have fn on them.
func stacksWith(stacks []waitingStack, fn string) []waitingStack {
	var with []waitingStack
	for _, s := range stacks {
		if s.has(fn) {
			with = append(with, s)
		}
	}
	return with
}
