package remote

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
)

// A relayed stream carries one client connection of one kernel channel
// through the supervisor (gopyk/relay.py, class Stream), which keeps the
// kernel-side socket while the local side is away. After OpenStream's reply
// line both directions carry frames: a type byte, a 4-byte big-endian length
// and the payload.
const (
	FrameData = 'D' // payload: stream bytes
	FrameAck  = 'A' // payload: 8-byte count of data bytes received so far
	FrameFin  = 'F' // no payload: the stream ends
	FrameNote = 'N' // supervisor → local side: a line for its log and the running cells (an iopub backlog at its bound)

	FrameHeader = 5
	MaxFrame    = 1 << 20 // the longest payload either side accepts
)

// StreamHello is the supervisor's answer to OpenStream.
type StreamHello struct {
	ID   string `json:"id"`   // the stream's name, for resuming it
	Recv uint64 `json:"recv"` // data bytes the supervisor has received on it
}

// OpenStream asks the supervisor behind conn (a fresh control connection) for
// a new stream to channel (id "") or to resume stream id, of which the
// caller has received recv bytes. After it returns, br and conn carry frames.
// A stream the supervisor no longer has is a *ReplyError with CodeNoStream.
func OpenStream(ctx context.Context, conn net.Conn, channel, id string, recv uint64) (StreamHello, *bufio.Reader, error) {
	if err := RequestStream(conn, channel, id, recv, ""); err != nil {
		return StreamHello{}, nil, err
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	h, err := ReadHello(ctx, conn, br, channel)
	return h, br, err
}

// ZMTP modes of a new stream (RequestStream), for a client whose ZMTP
// handshake the local side answered itself: the relay sends the kernel a
// client's greeting and drops the kernel's greeting and READY (ZMTPFront);
// or it drops the kernel's 10-byte signature only, which the client got
// from the local side (ZMTPStrip10). "": bytes pass untouched.
const (
	ZMTPFront   = "front"
	ZMTPStrip10 = "strip10"
)

// RequestStream sends the request of OpenStream without waiting for the
// answer: a new stream may send its first frames at once (ReadHello reads
// the answer later from br on conn). zmtp is a ZMTP mode for a new stream.
func RequestStream(conn net.Conn, channel, id string, recv uint64, zmtp string) error {
	b, _ := json.Marshal(streamRequest{Op: "stream", Channel: channel, ID: id, Recv: recv, Notes: true, ZMTP: zmtp})
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("open a %s stream: %w", channel, err)
	}
	return nil
}

// ReadHello reads the answer to RequestStream; ctx ending closes conn.
func ReadHello(ctx context.Context, conn net.Conn, br *bufio.Reader, channel string) (StreamHello, error) {
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	var h StreamHello
	err := readJSON(br, &h)
	if !stop() {
		return h, fmt.Errorf("open a %s stream: %w", channel, context.Cause(ctx))
	}
	if err != nil {
		return h, fmt.Errorf("open a %s stream: %w", channel, err)
	}
	if h.ID == "" {
		return h, fmt.Errorf("open a %s stream: %w", channel, &ProtocolError{Line: "reply without a stream id", Err: errors.New("no id")})
	}
	return h, nil
}

type streamRequest struct {
	Op      string `json:"op"`
	Channel string `json:"channel,omitempty"`
	ID      string `json:"id,omitempty"`
	Recv    uint64 `json:"recv"`
	Notes   bool   `json:"notes"` // the caller reads FrameNote (a supervisor sends none otherwise)
	ZMTP    string `json:"zmtp,omitempty"`
}

// AppendFrame appends a frame of kind with payload p to dst.
func AppendFrame(dst []byte, kind byte, p []byte) []byte {
	dst = append(dst, kind, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(p)))
	return append(dst, p...)
}

// AppendAck appends an ack frame saying n data bytes were received.
func AppendAck(dst []byte, n uint64) []byte {
	dst = append(dst, FrameAck, 0, 0, 0, 8)
	return binary.BigEndian.AppendUint64(dst, n)
}

// ReadFrame reads one frame; the payload aliases buf when it fits, which the
// caller may reuse for the next call.
func ReadFrame(br *bufio.Reader, buf []byte) (kind byte, payload []byte, err error) {
	var h [FrameHeader]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	switch {
	case n > MaxFrame:
		return 0, nil, fmt.Errorf("stream frame of %d bytes (at most %d)", n, MaxFrame)
	case h[0] == FrameAck && n != 8, h[0] == FrameFin && n != 0:
		return 0, nil, fmt.Errorf("stream frame %q with %d bytes", h[0], n)
	case h[0] != FrameData && h[0] != FrameAck && h[0] != FrameFin && h[0] != FrameNote:
		return 0, nil, fmt.Errorf("unknown stream frame type %#x", h[0])
	}
	if int(n) > cap(buf) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(br, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return h[0], buf, nil
}
