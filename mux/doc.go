// Package mux carries many byte streams over one io.ReadWriteCloser: the
// stdin/stdout of one exec session (or of an ssh client subprocess) that runs
// the remote launcher's mux action, for servers that refuse SSH forwarding.
// The client opens streams to unix sockets on the far side; the far side is
// the remote launcher (provisioner/remote/gopyk/mux.py, class Mux) or, in
// tests, Serve.
//
// Frames, both ways: a type byte, a 4-byte big-endian stream id, a 4-byte
// big-endian payload length, the payload (at most MaxPayload bytes):
//
//	O open   client → server  payload: the unix socket path
//	A accept server → client  the stream is connected
//	E error  server → client  payload: "<errno> <message>"; the open failed
//	D data   either way       stream bytes
//	W window either way       payload: 4-byte credit returned to the sender
//	C close  either way       no more frames on this stream, either way
//
// Flow control is per stream: a side may have at most Window bytes of data
// sent and not yet returned as credit by the other side, which returns it as
// its reader consumes. So one stream that the far side does not drain (a
// 100 MB iopub burst) holds at most Window bytes of the carrier ahead of
// another stream's reply. Stream ids are chosen by the client, never reused.
// A close ends a stream at once both ways; frames for a stream already
// closed are dropped.
package mux
