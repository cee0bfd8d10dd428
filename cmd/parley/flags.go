package main

import (
	"flag"
	"fmt"
	"io"
)

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("parley "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// helpRequested is parseFlags' answer to -h or --help: not a failure, but
// the command must not run. run prints the usage and exits 0. It travels as
// an error so the commands need no code of their own for it.
type helpRequested struct{ fs *flag.FlagSet }

func (h helpRequested) Error() string { return "help requested" }

// print writes the command's usage and flags, as flag.PrintDefaults does.
func (h helpRequested) print(w io.Writer) {
	flags := 0
	h.fs.VisitAll(func(*flag.Flag) { flags++ })
	if flags == 0 {
		fmt.Fprintf(w, "Usage: %s\n\nIt takes no flags: configuration comes from the environment (see the README).\n", h.fs.Name())
		return
	}
	fmt.Fprintf(w, "Usage: %s [flags]\n\nFlags:\n", h.fs.Name())
	h.fs.SetOutput(w)
	h.fs.PrintDefaults()
	h.fs.SetOutput(io.Discard)
}
