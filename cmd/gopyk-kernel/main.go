// Command gopyk-kernel is the launcher a gopyk kernel spec's argv runs; see
// package launcher.
package main

import (
	"context"
	"os"

	"github.com/gopyk/gopyk/launcher"
)

func main() {
	os.Exit(launcher.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
