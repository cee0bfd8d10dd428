package pglocal

import (
	"io"
	"sync"
)

// logTail keeps the last bytes the server wrote, so a failed start reports
// postgres's own explanation (wrong permissions, port in use, ...) in the
// error instead of sending the user to a log file.
type logTail struct {
	mu   sync.Mutex
	buf  []byte
	max  int
	dest io.Writer
}

func newLogTail(dest io.Writer, max int) *logTail { return &logTail{dest: dest, max: max} }

// Write keeps p and forwards it to the log. A failing log destination must
// not make postgres's output pipe break, so its errors are ignored.
func (t *logTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	_, _ = t.dest.Write(p)
	return len(p), nil
}

// String returns the kept output.
func (t *logTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
