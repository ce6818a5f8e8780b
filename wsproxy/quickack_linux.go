package wsproxy

import (
	"net"

	"golang.org/x/sys/unix"
)

// quickAckConn acknowledges every segment at once. Jupyter Server's proxies
// (jupyter-server-proxy's raw socket handler under tornado) leave Nagle on:
// a second small WebSocket message waits until the first is acknowledged,
// and Linux delays that ACK by up to 40 ms when we have nothing to send
// back. TCP_QUICKACK is not sticky, so it is set again after each read.
type quickAckConn struct {
	net.Conn
	raw interface {
		Control(func(fd uintptr)) error
	}
}

func quickAck(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	q := &quickAckConn{Conn: c, raw: raw}
	q.set()
	return q
}

func (q *quickAckConn) set() {
	q.raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	})
}

func (q *quickAckConn) Read(b []byte) (int, error) {
	n, err := q.Conn.Read(b)
	if n > 0 {
		q.set()
	}
	return n, err
}

// CloseWrite keeps half-close working for callers that look for it.
func (q *quickAckConn) CloseWrite() error { return q.Conn.(*net.TCPConn).CloseWrite() }
