// Command gopyk manages Jupyter kernel specs for kernels that run on remote
// machines over SSH: list, add, edit and delete.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/gopyk/gopyk/manage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := manage.Main(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
