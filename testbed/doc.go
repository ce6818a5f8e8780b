// Package testbed starts real test peers for integration tests: OpenSSH's sshd on
// a free loopback port with its own host key and config, owned by the test and
// stopped by PID.
package testbed
