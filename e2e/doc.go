//go:build linux

// Package e2e drives the built gopyk and gopyk-kernel binaries through the real
// parts a user meets: OpenSSH's sshd (testbed), Debian's ipykernel on the
// "remote" side, and jupyter-console, nbconvert/nbclient and jupyter-server on
// the local side. It has tests only.
package e2e
