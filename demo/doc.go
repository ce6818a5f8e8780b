//go:build linux

// Command demo drives gopyk programmatically against an embedded default: a
// throwaway OpenSSH sshd on loopback (run as you; no root needed), through which
// it launches a persistent remote kernel, runs code, leaves, re-attaches and
// checks the state survived, interrupts a long cell, and shuts down.
// `make demo` runs it.
package main
