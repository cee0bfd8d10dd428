//go:build bench

// Command minimal is the baseline of the cold-start benchmark: the least a Go
// net/http server does before it answers, built with the same flags as
// Parley. It listens on 127.0.0.1:$PORT and answers every request "ok".
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
		fmt.Fprintln(os.Stderr, "minimal:", err)
		os.Exit(1)
	}
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok"))
	}))
	fmt.Fprintln(os.Stderr, "minimal:", err)
	os.Exit(1)
}
