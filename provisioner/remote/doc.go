// Package remote holds the launcher script that runs on the remote host (Python
// standard library only), the shell command that starts it, and the framed
// protocol spoken with it over an SSH exec session and its control socket.
//
// Exec session (Command, Run, Exec): the login shell runs
// `[pre && echo <frame pre_ok> &&] exec 'python' -c '<bootstrap>'`. The
// bootstrap reads one JSON line of Params from stdin, runs
// ~/.gopyk/launcher-<hash>.py when its SHA-256 matches, and otherwise writes
// the frame {"op":"upload"} and reads "<length>\n<script>" from stdin (checked
// against the hash, cached atomically with mode 0600). Every machine-readable
// line on stdout starts with Magic; anything else is rc-file noise. The last
// frame is the Reply ({"ok":true,…} or {"ok":false,"code":…,"error":…}).
//
// Launch: the launcher finds the kernel spec along Jupyter's data path,
// makes a 0700 run dir (~/.gopyk/run/<id>, or /tmp/gopyk-<uid>/<id> when
// unix socket paths would be too long) holding kernel.json (0600, the only
// file with the key), kernel.log, supervisor.log, state.json and the sockets
// (ctl, and k-1…k-5 for ipc), then double-forks a supervisor (setsid, stdio on
// /dev/null) that starts the kernel in its own session and replies once the
// five sockets accept. If the local side closes the session first, the
// supervisor stops the kernel and removes the run dir.
//
// Control socket (Control): one JSON request line per connection: status,
// interrupt, persist, shutdown, restart, or lease, which stays open and
// receives event lines (kernel_exited, restarted). Without leases the
// supervisor waits the grace period and then stops the kernel, unless
// persistent. When the kernel exits on its own, every lease hears of it at
// once; the supervisor lingers (while a lease is held, up to 10 s) for a
// restart or shutdown request, then removes the run dir and exits. If the
// supervisor is killed, the kernel follows (PR_SET_PDEATHSIG on Linux,
// JPY_PARENT_PID for ipykernel).
package remote
