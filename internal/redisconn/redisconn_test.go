package redisconn_test

import (
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/redisconn"
)

func TestNewClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		url      string
		addr     string
		db       int
		tls      bool
		poolSize int // 0: only check that it is larger than go-redis's default
	}{
		{name: "Redis", url: "redis://127.0.0.1:6379/2", addr: "127.0.0.1:6379", db: 2},
		{name: "RedisTLS", url: "rediss://default:secret@example.upstash.io:6380", addr: "example.upstash.io:6380", tls: true},
		{name: "PoolSizeInURL", url: "redis://127.0.0.1:6379?pool_size=7", addr: "127.0.0.1:6379", poolSize: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, err := redisconn.NewClient(tt.url)
			if err != nil {
				t.Fatalf("NewClient: %v", err)
			}
			defer client.Close()
			opt := client.Options()
			if opt.Addr != tt.addr || opt.DB != tt.db || (opt.TLSConfig != nil) != tt.tls {
				t.Errorf("Addr, DB, TLS = %q, %d, %t; want %q, %d, %t",
					opt.Addr, opt.DB, opt.TLSConfig != nil, tt.addr, tt.db, tt.tls)
			}
			if tt.poolSize != 0 && opt.PoolSize != tt.poolSize {
				t.Errorf("PoolSize = %d, want %d from the URL", opt.PoolSize, tt.poolSize)
			}
			if tt.poolSize == 0 && opt.PoolSize < 100 {
				t.Errorf("PoolSize = %d, want room for many followers", opt.PoolSize)
			}
		})
	}
}

func TestNewClientErr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  string
	}{
		{name: "Scheme", url: "http://user:secret@127.0.0.1:6379"},
		{name: "Malformed", url: "redis://user:secret@127.0.0.1:port\x7f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisconn.NewClient(tt.url)
			if err == nil {
				t.Fatal("NewClient succeeded")
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}
