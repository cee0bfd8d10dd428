package server

import "testing"

func TestClientKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, ip, want string }{
		{"IPv4", "203.0.113.7", "203.0.113.7"},
		{"IPv4MappedIPv6", "::ffff:203.0.113.7", "203.0.113.7"},
		{"IPv6", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"IPv6SameNetwork", "2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"IPv6Zone", "fe80::1%eth0", "fe80::/64"},
		{"NotAnAddress", "pipe", "pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := clientKey(tt.ip); got != tt.want {
				t.Errorf("clientKey(%q) = %q, want %q", tt.ip, got, tt.want)
			}
		})
	}
}
