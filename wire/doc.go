// Package wire speaks the Jupyter messaging protocol over ZeroMQ (pure Go,
// go-zeromq/zmq4): signed messages, connection files, and a small client used
// for readiness checks, message-mode interrupts, graceful shutdowns and tests.
package wire
