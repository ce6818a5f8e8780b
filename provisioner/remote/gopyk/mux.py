# gopyk remote launcher: mux — the mux and forward_probe actions.
#
# For servers that refuse SSH forwarding: the mux action's stdin/stdout carry
# many streams to unix sockets on this host (the supervisor's control socket),
# framed as in mux/doc.go: type byte, 4-byte stream id, 4-byte length,
# payload. Each stream has a credit window each way, so one stream nobody
# drains cannot hold the others back by more than MUX_WINDOW bytes.
#
# Owns: class Mux (many streams to this host's unix sockets over the exec
# session's stdin/stdout, framed as package mux frames them, after the reply
# frame) and forward_probe (a throw-away unix socket for gopyk list to try).
# May not: reach anything but unix sockets the local side names, see the key.

import errno
import os
import selectors
import socket
import sys
import time

from .common import Fail, drop_front, rmtree, write_all
from .proto import reply


MUX_HDR = 9
MUX_MAX = 64 << 10
MUX_WINDOW = 256 << 10
MUX_OPEN, MUX_ACCEPT, MUX_ERROR, MUX_DATA, MUX_WINDOW_F, MUX_CLOSE = 79, 65, 69, 68, 87, 67


def mux_frame(kind, sid, payload=b""):
    n = len(payload)
    return bytes((kind, sid >> 24 & 255, sid >> 16 & 255, sid >> 8 & 255, sid & 255,
                  n >> 24 & 255, n >> 16 & 255, n >> 8 & 255, n & 255)) + payload


class MuxStream(object):
    __slots__ = ("sid", "sock", "out", "credit", "unacked", "events")

    def __init__(self, sid, sock):
        self.sid, self.sock = sid, sock
        self.out = bytearray()  # from the local side, not yet written to the socket
        self.credit = MUX_WINDOW  # data we may still send the local side
        self.unacked = 0  # written to the socket, not yet returned as credit
        self.events = 0


class Mux(object):
    def __init__(self, rfd, wfd):
        self.rfd, self.wfd = rfd, wfd
        self.sel = selectors.DefaultSelector()
        self.sel.register(rfd, selectors.EVENT_READ, None)
        self.streams = {}
        self.inbuf = bytearray()

    def send(self, kind, sid, payload=b""):
        # Blocking: the local side reads all the time (it buffers within the windows).
        write_all(self.wfd, mux_frame(kind, sid, payload))

    def run(self):
        while True:
            for key, mask in self.sel.select():
                if key.data is None:
                    if not self.on_input():
                        return
                elif self.streams.get(key.data.sid) is key.data:
                    self.on_socket(key.data, mask)

    def on_input(self):
        try:
            data = os.read(self.rfd, 256 << 10)
        except InterruptedError:
            return True
        if not data:
            return False
        buf = self.inbuf
        buf += data
        at = 0
        while len(buf) - at >= MUX_HDR:
            n = int.from_bytes(buf[at + 5:at + 9], "big")
            if n > MUX_MAX:
                raise Fail("protocol", "mux frame of %d bytes" % n)
            if len(buf) - at - MUX_HDR < n:
                break
            kind, sid = buf[at], int.from_bytes(buf[at + 1:at + 5], "big")
            payload = bytes(buf[at + MUX_HDR:at + MUX_HDR + n])
            at += MUX_HDR + n
            self.on_frame(kind, sid, payload)
        self.inbuf = drop_front(buf, at)
        return True

    def on_frame(self, kind, sid, payload):
        st = self.streams.get(sid)
        if kind == MUX_OPEN:
            self.open(sid, payload.decode("utf-8", "replace"))
        elif st is None:
            return  # a stream already closed: frames in flight
        elif kind == MUX_DATA:
            st.out += payload
            self.flush(st)
        elif kind == MUX_WINDOW_F:
            st.credit += int.from_bytes(payload, "big")
            self.update(st)
        elif kind == MUX_CLOSE:
            self.close(st, False)

    def open(self, sid, path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(path)
        except OSError as e:
            s.close()
            self.send(MUX_ERROR, sid, ("%d %s" % (e.errno or errno.EIO, e.strerror or e)).encode())
            return
        s.setblocking(False)
        st = MuxStream(sid, s)
        self.streams[sid] = st
        self.send(MUX_ACCEPT, sid)
        self.update(st)

    def flush(self, st):
        while st.out:
            try:
                n = st.sock.send(st.out[:MUX_MAX])
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close(st, True)
                return
            st.out = drop_front(st.out, n)
            st.unacked += n
        if st.unacked and (st.unacked >= MUX_WINDOW // 4 or not st.out):
            self.send(MUX_WINDOW_F, st.sid, st.unacked.to_bytes(4, "big"))
            st.unacked = 0
        self.update(st)

    def update(self, st):
        ev = (selectors.EVENT_READ if st.credit > 0 else 0) | (selectors.EVENT_WRITE if st.out else 0)
        if ev == st.events:
            return
        if not st.events:
            self.sel.register(st.sock, ev, st)
        elif not ev:
            self.sel.unregister(st.sock)
        else:
            self.sel.modify(st.sock, ev, st)
        st.events = ev

    def on_socket(self, st, mask):
        if mask & selectors.EVENT_WRITE:
            self.flush(st)
            if st.sid not in self.streams:
                return
        if mask & selectors.EVENT_READ and st.credit > 0:
            try:
                data = st.sock.recv(min(st.credit, MUX_MAX))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.close(st, True)
                return
            st.credit -= len(data)
            self.send(MUX_DATA, st.sid, data)
            self.update(st)

    def close(self, st, notify):
        if st.events:
            self.sel.unregister(st.sock)
        st.sock.close()
        del self.streams[st.sid]
        if notify:
            self.send(MUX_CLOSE, st.sid)


def mux(params):
    """Carry streams to this host's unix sockets over stdin/stdout until stdin ends.
    The local side writes only after the ok frame (STDIN has buffered nothing more)."""
    reply({"ok": True, "mux": 1})
    try:
        Mux(0, 1).run()
    except OSError:
        pass  # stdout is gone: the session ended
    except Exception as e:  # a bug or a garbled carrier: the local side sees the session end
        sys.stderr.write("gopyk mux: %s: %s\n" % (type(e).__name__, e))
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


def forward_probe(params):
    """A unix socket for the local side to reach by SSH forwarding, for gopyk list:
    answers whether this server forwards to unix sockets. Lives until stdin ends."""
    import select
    import tempfile

    d = tempfile.mkdtemp(prefix="gopyk-probe-")
    try:
        path = os.path.join(d, "p")
        ln = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ln.bind(path)
        ln.listen(4)
        reply({"ok": True, "control": path})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r, _, _ = select.select([0, ln], [], [], max(0, deadline - time.monotonic()))
            if ln in r:
                c, _ = ln.accept()
                c.sendall(b"ok\n")
                c.close()
            if 0 in r and not os.read(0, 4096):
                break
    finally:
        rmtree(d)
    os._exit(0)
