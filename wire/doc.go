// Package wire speaks the Jupyter messaging protocol over ZeroMQ (pure Go,
// go-zeromq/zmq4): signed messages, connection files, and a small client used
// for readiness checks, message-mode interrupts, graceful shutdowns and tests.
//
// The client works around zmq4's traps: Dial does the ZMTP handshake
// synchronously with no deadline (we dial through our own transports and
// close the conn when ctx ends), a peer that accepts and closes fails at once
// (we retry with backoff, which is what a forward to a not-yet-started kernel
// needs), Recv has no timeout (one reader goroutine per socket, ended by
// Close), Send is not goroutine-safe (a mutex per socket), and zmq4 logs to
// stderr (routed to the caller's slog.Logger). A Client lives as long as one
// kernel process: when the kernel exits its waits fail, and a restarted
// kernel needs a new Dial.
package wire
