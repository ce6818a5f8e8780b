// Package remote holds the launcher that runs on the remote host (the Python
// package gopyk/, standard library only, one module per job: its
// __init__.py maps them), the shell command that starts it, and the framed
// protocol spoken with it over an SSH exec session and its control socket.
//
// Exec session (Command, Run, Exec): the login shell runs
// `[pre && echo <frame pre_ok> &&] exec 'python' -c '<bootstrap>'`. The
// bootstrap reads one JSON line of Params from stdin and runs the package
// from ~/.gopyk/launcher-<hash>/gopyk/ when its modules match Hash (SHA-256
// over every module); otherwise it writes the frame {"op":"upload"} and
// reads "<length>\n<Artifact>" from stdin (the modules as JSON in zlib),
// checks it against the hash and extracts it into a 0700 directory that is
// renamed into place whole (modules 0600, bytecode cached in __pycache__).
// One exec, no extra round trip: sshd opens a session's window only once the
// command runs, so the parameters arrive a round trip after the exec, and
// the bootstrap hashes, asks for the upload and imports the package before
// it reads them. Every machine-readable line on stdout starts with Magic;
// anything else is rc-file noise. The last frame is the Reply
// ({"ok":true,…} or {"ok":false,"code":…,"error":…}).
//
// Launch: the launcher finds the kernel spec along Jupyter's data path,
// makes a 0700 run dir (~/.gopyk/run/<id>, or /tmp/gopyk-<uid>/<id> when
// unix socket paths would be too long) holding kernel.json (0600, the only
// file with the key), kernel.log, supervisor.log, state.json, pubhwm.py (the
// shim a python -m ipykernel kernel starts through: specs.py) and the sockets
// (ctl, and k-1…k-5 for ipc), then double-forks a supervisor (setsid, stdio on
// /dev/null) that starts the kernel in its own session and replies once the
// five sockets accept. As soon as ctl is bound, before the kernel starts, a
// frame {"op":"control","control":…,"run_dir":…} says where
// (Params.OnControl): the local side takes its lease and opens its streams
// while the kernel starts. If the local side closes the session first, the
// supervisor stops the kernel and removes the run dir.
//
// Control socket (Control): one JSON request line per connection: status,
// interrupt, persist, shutdown, restart, or lease, which stays open and
// receives event lines (kernel_exited, restarted). A lease also carries
// the quick requests (status, interrupt, persist: Reply.LeaseOps), each
// with an id and answered by a "reply" event with it (Lease.Call): an
// interrupt costs one round trip on a connection that is already open.
// Without leases the
// supervisor waits the grace period and then stops the kernel, unless
// persistent. When the kernel exits on its own, every lease hears of it at
// once; the supervisor lingers (while a lease is held, up to 10 s) for a
// restart or shutdown request, then removes the run dir and exits. If the
// supervisor is killed, the kernel follows (PR_SET_PDEATHSIG on Linux,
// JPY_PARENT_PID for ipykernel).
//
// Streams (OpenStream): a control connection whose request is
// {"op":"stream","channel":…} becomes the relay of one client connection to
// that kernel socket; {"op":"stream","id":…,"recv":N} resumes one on a new
// connection. Both sides keep what they sent until acknowledged and, on
// resume, send again from the offset the other reached, so nothing in flight
// is lost with an SSH connection; the supervisor keeps a stream whose local
// side is away for the grace period. A new stream asked for while the kernel
// starts waits at the supervisor, its first bytes unread, until the kernel
// accepts. After the reply line both directions
// carry frames (FrameData, FrameAck, FrameFin; FrameNote from the supervisor).
//
// Mux (ActionMux, Carrier): for servers that refuse forwarding, an exec
// session whose stdin/stdout, after the reply, carry many connections to
// unix sockets on the remote (the control socket), framed by package mux.
// ActionForwardProbe opens a throw-away unix socket so that gopyk list can
// tell whether the server forwards to it (ProbeForward).
//
// Launcher slurm (Params.Launcher): the supervisor stays on the login node
// (the SSH target) and submits the kernel with `sbatch --parsable [args]
// job.sh`; job.sh (in the run dir, no key) first writes into the connection
// file the address at which the job's node reaches the submit host, then
// execs the kernel, which binds random ports (0 in the file) and writes them
// back. Channels are then node:port, which the supervisor's streams connect to
// from the login node. While the job pends, the launch relays frames
// {"op":"progress","message":…} (Params.Progress); past QueueTimeout the job is
// cancelled (CodeQueueTimeout, with squeue's reason). Interrupt is `scancel
// --signal=INT --batch`, stop is `scancel`; the supervisor notices the job's
// end by a connect to the heartbeat port every second and `scontrol show job`
// every 30 s. The run dir must be on a file system the compute node shares
// (the home). A supervisor that died leaves its job to the next ActionList,
// which cancels it.
package remote
