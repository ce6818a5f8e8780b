// Command gopyk manages Jupyter kernel specs for kernels that run on remote
// machines over SSH (list, add, edit, delete), and ws-proxy, an ssh ProxyCommand
// for sshd behind a WebSocket.
package main

import (
	"context"
	"os"

	"github.com/gopyk/gopyk/manage"
	"github.com/gopyk/gopyk/master"
	"github.com/gopyk/gopyk/transport"
)

// No signal handling: every command is short, and kernel.json is replaced
// atomically, so Ctrl+C (also at the delete prompt) can simply end the process.
func main() {
	if master.IsMaster() { // started by Ensure, to hold a host's connection
		os.Exit(master.Main())
	}
	// ssh runs us as its SSH_ASKPASS when we asked it to (ssh_client openssh).
	if code, ok := transport.AskpassMain(os.Args[1:], os.Stdout, os.Stderr); ok {
		os.Exit(code)
	}
	os.Exit(manage.Main(context.Background(), os.Args, os.Stdin, os.Stdout, os.Stderr))
}
