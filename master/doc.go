// Package master is gopyk's own connection master: one background process
// per host (per resolved destination, user and jump chain: Key, like
// OpenSSH's %C) that holds the one authenticated SSH connection every
// gopyk-kernel and `gopyk list` of the user shares. The first one that
// needs the host starts it (Ensure: a lock beside the socket makes racing
// launches end with one master); it logs in once (on the starter's
// terminal when it may ask), then detaches and listens on a 0600 socket in
// a 0700 directory of the user's (Dir). It re-dials once for all its
// clients after a loss (dial pacing: a network error is retried a second
// later, a refused login not for a while), and exits a set time after its
// last client left (ControlPersist-like). `gopyk connect HOST` starts one
// on a terminal and keeps it.
//
// It speaks OpenSSH's PROTOCOL.mux on its socket (sessions with passed
// descriptors, stdio and local forwards to unix sockets, alive checks,
// terminate, stop), so that one client serves OpenSSH's masters and ours
// (and `ssh -S SOCKET host` works too), plus one request of its own,
// muxGopykStatus, for `gopyk connect --status`. Unlike OpenSSH's master it
// sends a session's exec without waiting for the server's answer, keeps a
// spare session channel open so a launch does not wait for one, keeps the
// sessions it opens under sshd's MaxSessions (launches beyond wait), kills
// what still runs of a session whose client went away, and gives its
// failures their sshconf kind ("[auth] …", ParseFailure).
//
// Unix only: on Windows every gopyk-kernel keeps its own connection.
package master
