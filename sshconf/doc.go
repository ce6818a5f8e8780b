// Package sshconf turns an ssh host alias into typed settings the way OpenSSH
// would (ssh -G first, a built-in reader when OpenSSH is missing) and dials it
// with golang.org/x/crypto/ssh: agent and key auth, known_hosts, ProxyJump,
// ProxyCommand and keepalive, with errors a user can act on.
package sshconf
