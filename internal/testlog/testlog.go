// Package testlog is where tests send the logs of the servers they run: a
// buffer safe for several writers at once (a child process's stdout and
// stderr, servers sharing one log), bounded, and readable while it fills.
package testlog

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer keeps what is written to it, up to Max bytes (0: no bound); the
// rest is dropped. Its methods are safe for concurrent use.
type Buffer struct {
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer; it never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Max <= 0 {
		b.buf.Write(p)
	} else if b.buf.Len() < b.Max {
		b.buf.Write(p[:min(len(p), b.Max-b.buf.Len())])
	}
	return len(p), nil
}

// String is everything kept so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail is the last n bytes kept, for failure messages.
func (b *Buffer) Tail(n int) string {
	s := b.String()
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// Lines is every non-empty line kept so far, trimmed.
func (b *Buffer) Lines() []string {
	var out []string
	for _, line := range strings.Split(b.String(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}
