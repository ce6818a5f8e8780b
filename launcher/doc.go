// Package launcher is the `gopyk-kernel` command that a kernel spec's argv runs:
// flags, the connection and persistence files, signals and the Ctrl+D menu,
// around a provisioner.
package launcher
