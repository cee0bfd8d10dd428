//go:build bench

// Command loadgen is the unary benchmark's external load generator: a
// process of its own, so that the server's figures do not share a process
// with the client, speaking HTTP/1.1 with keep-alive and JSON, as curl and
// connect-web's JSON transport do. Like wrk, it keeps its own cost low: each
// caller owns one connection and writes the same request bytes, built once,
// and reads the response with a small parser of its own.
//
// Standard input holds the callers, one JSON object per line
// ({"path": ..., "token": ..., "body": ..., "expect": ...}), then commands:
// "go D" runs every caller for the duration D (a Go duration) and prints a
// JSON summary line; "quit" (or the end of input) ends the process. It
// prints "ready" once every connection is open.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// caller is one client: its request and what its answer must contain.
type caller struct {
	Path   string `json:"path"`
	Token  string `json:"token"`
	Body   string `json:"body"`
	Expect string `json:"expect"`
}

// summary is what one run reports.
type summary struct {
	Calls   int64    `json:"calls"`
	Seconds float64  `json:"seconds"`
	Errors  []string `json:"errors,omitempty"`
}

func main() {
	addr := os.Args[1]
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 1<<20)
	var conns []*conn
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "" {
			break
		}
		var c caller
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			fail("caller: %v", err)
		}
		cn, err := dial(addr, c)
		if err != nil {
			fail("dial: %v", err)
		}
		conns = append(conns, cn)
	}
	fmt.Println("ready")
	for in.Scan() {
		cmd := strings.Fields(in.Text())
		if len(cmd) == 0 {
			continue
		}
		if cmd[0] == "quit" {
			return
		}
		d, err := time.ParseDuration(cmd[len(cmd)-1])
		if cmd[0] != "go" || err != nil {
			fail("unknown command %q", in.Text())
		}
		out, _ := json.Marshal(run(conns, d))
		fmt.Println(string(out))
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(1)
}

// conn is one keep-alive connection and its caller's request.
type conn struct {
	nc      net.Conn
	r       *bufio.Reader
	request []byte
	expect  []byte
	body    []byte
}

func dial(addr string, c caller) (*conn, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s",
		c.Path, addr, c.Token, len(c.Body), c.Body)
	return &conn{nc: nc, r: bufio.NewReaderSize(nc, 16<<10), request: b.Bytes(), expect: []byte(c.Expect)}, nil
}

// run calls on every connection until d has passed. Calls cut by the end
// of the window are not counted.
func run(conns []*conn, d time.Duration) summary {
	var (
		n    atomic.Int64
		mu   sync.Mutex
		errs []string
		wg   sync.WaitGroup
	)
	begin := time.Now()
	end := begin.Add(d)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				err := c.call(end)
				if time.Now().After(end) {
					return
				}
				if err != nil {
					mu.Lock()
					if len(errs) < 3 {
						errs = append(errs, err.Error())
					}
					mu.Unlock()
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return summary{Calls: n.Load(), Seconds: time.Since(begin).Seconds(), Errors: errs}
}

// call sends the request and reads one whole response, which must be a
// 200 whose body holds the expected text.
func (c *conn) call(end time.Time) error {
	c.nc.SetDeadline(end.Add(5 * time.Second))
	if _, err := c.nc.Write(c.request); err != nil {
		return err
	}
	status, err := c.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	ok := bytes.HasPrefix(status, []byte("HTTP/1.1 200 "))
	length, chunked := -1, false
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return fmt.Errorf("content-length %q", value)
			}
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = asciiEqualFold(value, "chunked")
		}
	}
	c.body = c.body[:0]
	switch {
	case length >= 0:
		c.body = grow(c.body, length)
		if _, err := io.ReadFull(c.r, c.body); err != nil {
			return err
		}
	case chunked:
		if err := c.readChunked(); err != nil {
			return err
		}
	default:
		return errors.New("response without a length")
	}
	if !ok {
		return fmt.Errorf("%s: %s", bytes.TrimSpace(status), c.body)
	}
	if !bytes.Contains(c.body, c.expect) {
		return fmt.Errorf("answer without %q: %s", c.expect, c.body)
	}
	return nil
}

func (c *conn) readChunked() error {
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 32)
		if err != nil {
			return fmt.Errorf("chunk size %q", line)
		}
		if size == 0 {
			_, err := c.r.ReadSlice('\n')
			return err
		}
		at := len(c.body)
		c.body = grow(c.body, at+int(size))
		if _, err := io.ReadFull(c.r, c.body[at:]); err != nil {
			return err
		}
		if _, err := c.r.Discard(2); err != nil {
			return err
		}
	}
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		nb := make([]byte, n)
		copy(nb, b)
		return nb
	}
	return b[:n]
}

func asciiEqualFold(b []byte, s string) bool {
	return len(b) == len(s) && strings.EqualFold(string(b), s)
}
