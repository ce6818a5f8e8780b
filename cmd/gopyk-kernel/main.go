// Command gopyk-kernel is the launcher a gopyk kernel spec's argv runs; see
// package launcher.
package main

import (
	"context"
	"os"

	"github.com/gopyk/gopyk/launcher"
	"github.com/gopyk/gopyk/master"
	"github.com/gopyk/gopyk/transport"
)

func main() {
	if master.IsMaster() { // started by Ensure, to hold a host's connection
		os.Exit(master.Main())
	}
	// ssh runs us as its SSH_ASKPASS when we asked it to (ssh_client openssh).
	if code, ok := transport.AskpassMain(os.Args[1:], os.Stdout, os.Stderr); ok {
		os.Exit(code)
	}
	os.Exit(launcher.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
