//go:build !windows

package master

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"

	"github.com/gopyk/gopyk/openssh"
)

// PROTOCOL.mux (OpenSSH's ControlMaster protocol, version 4): what the
// master speaks on its socket, so that `ssh -S`, sshpyk and gopyk's own
// client of OpenSSH masters all use it as they use an OpenSSH master.
const (
	muxHello         = 0x00000001
	muxNewSession    = 0x10000002
	muxAliveCheck    = 0x10000004
	muxTerminate     = 0x10000005
	muxOpenFwd       = 0x10000006
	muxCloseFwd      = 0x10000007
	muxNewStdioFwd   = 0x10000008
	muxStopListening = 0x10000009
	muxOK            = 0x80000001
	muxDenied        = 0x80000002
	muxFailure       = 0x80000003
	muxExitMessage   = 0x80000004
	muxAlive         = 0x80000005
	muxSessionOpened = 0x80000006

	// gopyk's own requests, numbered apart from OpenSSH's: an OpenSSH
	// master answers them with MUX_S_FAILURE.
	muxGopykStatus  = 0x10000100 // → muxGopykInfo: the master's state as JSON
	muxGopykInfo    = 0x80000100
	muxGopykConnect = 0x10000101 // → MUX_S_OK once connected, or the dial's failure

	muxVersion      = 4
	muxFwdLocal     = 1
	portStreamLocal = 0xfffffffe // (u_int)-2: the host is a unix socket path
	maxPacket       = 256 << 10
)

// packet is one message being built: type, then fields.
type packet []byte

func newPacket(typ uint32) packet    { return binary.BigEndian.AppendUint32(nil, typ) }
func (p packet) u32(v uint32) packet { return binary.BigEndian.AppendUint32(p, v) }
func (p packet) str(s string) packet { return append(p.u32(uint32(len(s))), s...) }
func (p packet) frame() []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}
func failure(rid uint32, r string) []byte { return newPacket(muxFailure).u32(rid).str(r).frame() }

// readPacket reads one length-prefixed message.
func readPacket(c *net.UnixConn) (uint32, *openssh.Fields, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 4 || n > maxPacket {
		return 0, nil, fmt.Errorf("a message of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		return 0, nil, err
	}
	f := openssh.NewFields(b)
	return f.U32(), f, nil
}

// receiveFD reads one passed file descriptor, as OpenSSH's mm_receive_fd:
// one byte of data carrying it.
func receiveFD(c *net.UnixConn) (int, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return -1, err
	}
	if n != 1 || oobn == 0 {
		return -1, errors.New("no file descriptor passed")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return -1, err
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds[1:] {
			unix.Close(fd)
		}
		if len(fds) > 0 {
			unix.CloseOnExec(fds[0])
			return fds[0], nil
		}
	}
	return -1, errors.New("no file descriptor passed")
}

// receiveFDs reads n passed descriptors; on failure none is left open.
func receiveFDs(c *net.UnixConn, n int) ([]int, error) {
	fds := make([]int, 0, n)
	for range n {
		fd, err := receiveFD(c)
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, err
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

// peerUID is the user at the other end of a unix connection: the socket's
// directory is the user's own (0700), and this is the second lock, as in
// OpenSSH (getpeereid).
func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	uid := -1
	var serr error
	err = raw.Control(func(fd uintptr) { uid, serr = peerUIDOf(int(fd)) })
	if err == nil {
		err = serr
	}
	return uid, err
}
