// Package launcher is the `gopyk-kernel` command that a kernel spec's argv runs:
// flags, the connection and persistence files, signals and the Ctrl+D menu,
// around a provisioner.
//
// Under Jupyter the spec's argv is `gopyk-kernel --kernel NAME
// --connection-file {connection_file}`: the file Jupyter wrote gives the local
// ports and the key, and stays Jupyter's (never removed here). Jupyter
// interrupts by SIGINT to the process group (interrupt_mode signal), shuts
// down with a shutdown_request through the forwards (the remote kernel exits,
// the provisioner reports it, the launcher exits 1) and SIGTERM/SIGKILL when
// that is slow, and restarts by starting a new gopyk-kernel with the same
// connection file: the new process binds the same ports once the old one is
// gone, so a restart keeps ports and key. Exiting non-zero whenever the remote
// kernel dies on its own is what lets Jupyter's auto-restart work.
//
// By hand, without --connection-file, a kernel-<id>.json is written in the
// Jupyter runtime dir and removed on exit. Persistent kernels (--persistent,
// --persistent-file, --leave, or leaving with SIGQUIT or the menu) get a 0600
// gopyk-kernel-<id>.json there that --existing reads to re-attach; it is
// rewritten after every launch, attach and restart and removed when the kernel
// is shut down.
//
// On Windows Jupyter interrupts by setting the event whose handle is in
// JPY_INTERRUPT_EVENT and passes a process handle in JPY_PARENT_PID; both
// are waited on (parent_windows.go) and turned into the same requests.
// Ctrl+C, Ctrl+Break and closing the console stand for SIGINT, SIGQUIT and
// SIGTERM there, and there is no Ctrl+D menu.
//
// Signals and stdin are handled by one dispatcher goroutine, so a request to
// stop cancels a launch or restart in progress instead of queueing behind it;
// signals that arrive before the kernel is ready (other than stop requests)
// are logged and dropped. stdin is read only when it is a terminal, and then
// only while gopyk-kernel is in its foreground.
package launcher
