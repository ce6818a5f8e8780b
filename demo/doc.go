// Package demo drives gopyk programmatically: it starts a throwaway sshd on
// loopback, launches a persistent remote kernel through it, runs code, leaves,
// re-attaches, interrupts and shuts down. `make demo` runs it.
package demo
