package llm

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfterSeconds(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{name: "OKSeconds", headers: map[string]string{"Retry-After": "20"}, want: 20},
		{name: "OKFractionRoundsUp", headers: map[string]string{"Retry-After": "0.2"}, want: 1},
		{name: "OKMilliseconds", headers: map[string]string{"Retry-After-Ms": "2500", "Retry-After": "9"}, want: 3},
		{name: "OKHTTPDate", headers: map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, want: 90},
		{name: "OKHuge", headers: map[string]string{"Retry-After": "1e300"}, want: 1<<31 - 1},
		{name: "ErrMissing", headers: nil, want: defaultRetryAfter},
		{name: "ErrZero", headers: map[string]string{"Retry-After": "0"}, want: defaultRetryAfter},
		{name: "ErrPastDate", headers: map[string]string{"Retry-After": now.Add(-time.Minute).Format(http.TimeFormat)}, want: defaultRetryAfter},
		{name: "ErrGarbage", headers: map[string]string{"Retry-After": "soon"}, want: defaultRetryAfter},
		{name: "ErrNaN", headers: map[string]string{"Retry-After": "NaN"}, want: defaultRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := &http.Response{Header: http.Header{}}
			for k, v := range tt.headers {
				res.Header.Set(k, v)
			}
			if got := retryAfterSeconds(res, now); got != tt.want {
				t.Errorf("retryAfterSeconds(%v) = %d, want %d", tt.headers, got, tt.want)
			}
		})
	}
}
