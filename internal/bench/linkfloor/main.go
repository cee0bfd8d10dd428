//go:build bench

// Command linkfloor is the second baseline of the cold-start benchmark: the
// minimal server (internal/bench/minimal) linked with every package Parley
// links, standard library included, and nothing of Parley's own
// (imports.go, kept equal to `go list -deps ./cmd/parley` by
// TestFloorImports). Its start is the binary's loading, the runtime's
// start and those packages' initialization: what Parley's start cannot go
// below without dropping a library. It listens on 127.0.0.1:$PORT and
// answers every request "ok".
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", os.Getenv("PORT")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok"))
	}))
	fmt.Fprintln(os.Stderr, "floor:", err)
	os.Exit(1)
}
