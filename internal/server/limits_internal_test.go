package server

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"

	"connectrpc.com/connect"
)

func gzipOf(tb testing.TB, n int) []byte {
	tb.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(bytes.Repeat([]byte("a"), n))
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

// TestCappedGzip: inflating stops just past the cap, with connect's
// resource_exhausted, instead of running through the whole bomb; a message
// of exactly the cap inflates whole.
func TestCappedGzip(t *testing.T) {
	t.Parallel()
	const limit = 4 << 10
	tests := []struct {
		name     string
		inflated int
		wantErr  bool
	}{
		{"OK", limit, false},
		{"ErrOneByteOver", limit + 1, true},
		{"ErrBomb", 10 << 20, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := &cappedGzip{max: limit}
			// Used twice, as connect's pool reuses decompressors.
			for range 2 {
				if err := d.Reset(bytes.NewReader(gzipOf(t, tt.inflated))); err != nil {
					t.Fatal(err)
				}
				// A small buffer, so that a reader which ignored the cap
				// would be caught reading far past it.
				n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{d}, make([]byte, 512))
				if !tt.wantErr {
					if err != nil || n != int64(tt.inflated) {
						t.Fatalf("read %d bytes, err %v; want %d, nil", n, err, tt.inflated)
					}
					continue
				}
				if connect.CodeOf(err) != connect.CodeResourceExhausted || n > limit+512 {
					t.Fatalf("read %d bytes, err %v; want at most %d and resource_exhausted", n, err, limit+512)
				}
			}
		})
	}
}
