package server

import "testing"

func TestETagMatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ifNoneMatch, etag string
		want              bool
	}{
		{`"a"`, `"a"`, true},
		{`"b", "a"`, `"a"`, true},
		{`W/"a"`, `"a"`, true},
		{`*`, `"a"`, true},
		{`"b"`, `"a"`, false},
		{``, `"a"`, false},
		{`"a"`, ``, false},
		{`"ab"`, `"a"`, false},
	} {
		if got := etagMatches(tc.ifNoneMatch, tc.etag); got != tc.want {
			t.Errorf("etagMatches(%q, %q) = %v, want %v", tc.ifNoneMatch, tc.etag, got, tc.want)
		}
	}
}
