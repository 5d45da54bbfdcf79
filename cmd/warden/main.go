// Command warden is the one Warden binary: the server (`serve`) and the
// admin client commands that talk to a running server's admin API.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "warden:", err)
		os.Exit(1)
	}
}
