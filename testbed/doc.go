// Package testbed starts real test peers for integration tests and `make demo`:
// OpenSSH's sshd on a free loopback port with its own host key and config,
// network namespaces joined by a veth pair (link drops), a one-node Slurm with
// munge, pseudo-terminals, a WebSocket gateway that behaves like
// jupyter-server-proxy's raw socket handler (tornado, Nagle left on), and
// Debian's JupyterHub 3 with its configurable-http-proxy. Whatever it starts
// is owned by the caller and stopped by PID; namespaces are deleted.
//
// As root, sshd logs in as the unprivileged test user ($GOPYK_TEST_USER,
// default gpktest, created by `make setup`); as a normal user it runs
// unprivileged and logs in as that user (what `make demo` does).
//
//	s := testbed.SSHDForTest(t, testbed.Options{})
//	route, _ := sshconf.Resolve(ctx, s.Alias, sshconf.Options{ConfigFile: s.ConfigFile})
//	c, _ := sshconf.Dial(ctx, route, sshconf.DialOptions{})
//
// For a jump host start a second one with another Alias and use
// target.ConfigVia(jump). Freeze/Thaw, KillConns, Kill/Restart simulate a
// silent peer, dropped connections and a server restart; SessionPIDs and
// Exec let tests look at remote processes. Linux only.
package testbed
