package provisioner

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/gopyk/gopyk/provisioner/remote"
)

// The ZMTP handshake of a client connection is answered here, at once,
// instead of by the kernel through the relay: a ZMTP 3 peer sends its
// greeting in steps, each after the other's (signature, version, the rest,
// then READY), so that through the relay a new connection's first request
// waits two and a half round trips for the handshake; a launch and every
// reconnecting socket pay them. Here the client gets the kernel's side of
// the handshake (ZMTP 3.0, NULL, the socket type its channel has) and
// sends its first messages at once; the supervisor's relay does the
// kernel's side with the client's own READY (Identity and all), and drops
// the kernel's greeting and READY (remote.ZMTPFront). Both ends speak ZMTP
// 3.0, which libzmq 4 and go-zeromq agree on (3.1 differs only in how a
// subscription is sent, and each end picks the lower version).
//
// A client that is not ZMTP 3 (libzmq 3's ZMTP 2) gets the kernel's own
// handshake after the signature, which is the same from every ZMTP 2+
// peer (remote.ZMTPStrip10).

// zmtpSignature is a ZMTP 2/3 signature with an empty routing id, as
// libzmq sends it: 0xFF, the 8-byte length 1, 0x7F.
var zmtpSignature = []byte{0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F}

// zmtpGreetingRest follows the signature: version 3.0, mechanism NULL,
// not as-server, filler.
var zmtpGreetingRest = func() []byte {
	b := []byte{3, 0}
	b = append(b, "NULL"...)
	b = append(b, make([]byte, 16)...) // mechanism padded to 20
	b = append(b, 0)                   // as-server
	return append(b, make([]byte, 31)...)
}()

// zmtpSocketType is the kernel's socket type for each channel, as its
// READY would say it; the client checks that it may talk to it.
var zmtpSocketType = map[string]string{"shell": "ROUTER", "control": "ROUTER", "stdin": "ROUTER", "hb": "ROUTER", "iopub": "PUB"}

// zmtpReady is a READY command with the Socket-Type property.
func zmtpReady(socketType string) []byte {
	var body []byte
	body = append(body, 5)
	body = append(body, "READY"...)
	body = append(body, byte(len("Socket-Type")))
	body = append(body, "Socket-Type"...)
	body = append(body, 0, 0, 0, byte(len(socketType)))
	body = append(body, socketType...)
	return append([]byte{zmtpCommand, byte(len(body))}, body...)
}

// zmtpFrontWait bounds a client's silence in its handshake (libzmq's own
// handshake interval is 30 s).
const zmtpFrontWait = 30 * time.Second

// zmtpFront answers lc's ZMTP handshake for channel. toClient writes to the
// client (through the stream's tap, so that it follows the bytes). It
// returns the relay's mode and what it read of the client: with
// remote.ZMTPFront the client's greeting, which the relay must not get;
// with remote.ZMTPStrip10 the start of the stream, which it must.
func zmtpFront(lc net.Conn, channel string, toClient func([]byte) error) (mode string, read []byte, err error) {
	st, ok := zmtpSocketType[channel]
	if !ok {
		return "", nil, nil
	}
	_ = lc.SetReadDeadline(time.Now().Add(zmtpFrontWait))
	defer lc.SetReadDeadline(time.Time{})
	if err := toClient(zmtpSignature); err != nil {
		return "", nil, err
	}
	// libzmq sends its signature, and its major version once it has ours.
	buf := make([]byte, 0, zmtpGreetingLen)
	for len(buf) < 11 {
		n, err := lc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if len(buf) > 0 && err == io.EOF {
				break
			}
			return "", buf, fmt.Errorf("zmtp handshake with the client: %w", err)
		}
	}
	if len(buf) < 11 || buf[0] != 0xFF || buf[9]&1 == 0 || buf[10] < 3 {
		// Not ZMTP 3: the kernel's own handshake, after the signature
		// the client has.
		return remote.ZMTPStrip10, buf, nil
	}
	if err := toClient(append(append([]byte(nil), zmtpGreetingRest...), zmtpReady(st)...)); err != nil {
		return "", buf, err
	}
	for len(buf) < zmtpGreetingLen {
		n, err := lc.Read(buf[len(buf):zmtpGreetingLen])
		buf = buf[:len(buf)+n]
		if err != nil {
			return "", buf, fmt.Errorf("zmtp handshake with the client: %w", err)
		}
	}
	if mech := bytes.TrimRight(buf[12:32], "\x00"); string(mech) != "NULL" {
		return "", buf, errors.New("zmtp handshake: the client asks for security mechanism " + string(mech) + "; Jupyter kernels speak NULL")
	}
	return remote.ZMTPFront, buf, nil
}
