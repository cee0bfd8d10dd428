// Package localproc starts the local servers Parley runs beside itself —
// PostgreSQL for `parley dev` and tests, redis-server for tests, parley
// itself for the benchmarks — on a loopback port, as children that do not
// outlive the process that started them.
//
// It is imported by production code (pglocal, through `parley dev`), so it
// must not import testing.
package localproc

import "net"

// FreePort returns a TCP port on 127.0.0.1 that nobody listened on a moment
// ago. Another process may take it before the caller's server binds it, so
// callers retry a start that fails with "address in use". It is always
// loopback: these servers never listen anywhere else, and a port free on
// another address may still be taken on 127.0.0.1.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
