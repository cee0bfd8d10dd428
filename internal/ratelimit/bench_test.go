package ratelimit

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/redisconn"
	"github.com/parleyhq/parley/internal/redistest"
)

// BenchmarkRedisAllow measures one check from 32 concurrent callers (the
// unary benchmark's load), each its own key, with the plain client and with
// the auto-pipeliner; cpu-µs/op is this process's CPU time per check.
func BenchmarkRedisAllow(b *testing.B) {
	url := redistest.URL(b)
	client, err := redisconn.NewClient(url)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	ap, err := redisconn.AutoPipeline(client)
	if err != nil {
		b.Fatal(err)
	}
	defer ap.Close()
	limit := PerMinute(1_000_000_000)
	for _, c := range []struct {
		name string
		new  func(prefix string) *Redis
	}{
		{"client", func(p string) *Redis { return NewRedis(client, p) }},
		{"autopipeline", func(p string) *Redis { return NewRedis(ap, p) }},
		{"pipelined", func(p string) *Redis { return NewRedis(client, p, Pipelined(ap)) }},
	} {
		b.Run(c.name+"/one-caller", func(b *testing.B) {
			l := c.new(redistest.Prefix(b))
			b.ReportAllocs()
			for b.Loop() {
				if res, err := l.Allow(context.Background(), "user:1", limit); err != nil || !res.Allowed {
					b.Fatalf("Allow: %+v, %v", res, err)
				}
			}
		})
		b.Run(c.name+"/32-callers", func(b *testing.B) {
			l := c.new(redistest.Prefix(b))
			var next atomic.Int64
			b.SetParallelism(16)
			b.ReportAllocs()
			before := cpuNow()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				key := "user:" + strconv.FormatInt(next.Add(1), 10)
				for pb.Next() {
					if res, err := l.Allow(context.Background(), key, limit); err != nil || !res.Allowed {
						b.Errorf("Allow: %+v, %v", res, err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(cpuNow()-before)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
		})
	}
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
