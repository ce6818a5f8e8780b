# gopyk remote launcher: relay — relayed streams to the kernel's sockets.
#
# Every client connection the local side forwards is relayed here rather than
# sent straight to the kernel's socket, so that it survives the SSH connection
# it came over. The stream keeps its kernel-side socket while the local side
# is away and resumes on whatever channel comes next: each side keeps what it
# sent until the other acknowledges it and, on resume, sends again from the
# offset the other says it reached. Neither ZMQ end sees the outage, and a
# request or reply that was on the wire when the link died is not lost.
#
# On the channel, after the reply line, both ways carry frames: a type byte
# and a 4-byte big-endian length, then the payload. D: data. A: 8-byte count
# of data bytes received so far (lets the sender drop them). F: the end.
# N (to the local side, when its request asked for "notes"): a line of text
# for its log and the running cells (backlog.py's bound).
#
# Kernel bytes wait in sent, from the last acknowledged one on; sendpos is
# the next to frame for the channel, so a channel that drains slowly holds
# at most a frame of them in to_c, and a resumed one starts where the other
# side says it got to. A kernel that closes its socket has its stream end
# once the local side has what it wrote before.
#
# Owns: class Stream (the resumable stream: acks, resends, its frame format D/A/F/N,
# flow control), the memory tuning of the supervisor (malloc trim/threshold).
# May not: read or write the control protocol beyond a stream's reply line
# (serve.py hands it the connection), see the key (it relays signed bytes
# unread), write to stdout (the supervisor's stdio is /dev/null).

import json
import selectors

from .common import drop_front, send_all


STREAM_CAP = 2 << 20  # unacknowledged bytes kept in memory per direction; reading stops beyond (the SSH window is 2 MiB too)
ACK_EVERY = 256 << 10
READ_SIZE = 256 << 10  # big reads: fewer wakeups, frames and SSH writes for bulk output
CHANNEL_READ = 1 << 16
SEND_CHUNK = 256 << 10  # the longest data frame written to the channel
FRAME_MAX = 1 << 20
HDR_LEN = 5
FRAME_D, FRAME_A, FRAME_F, FRAME_N = 68, 65, 70, 78


def frame_header(kind, n):
    return bytes((kind, n >> 24 & 255, n >> 16 & 255, n >> 8 & 255, n & 255))


TRIM_AFTER = 1 << 20  # a dropped buffer this big schedules a malloc_trim


def libc_call(name, *args):
    """Call a C library function where it exists (glibc's malloc tuning); elsewhere do nothing."""
    try:
        import ctypes

        getattr(ctypes.CDLL(None), name)(*args)
    except Exception:
        pass


def trim_memory():
    libc_call("malloc_trim", 0)


def tune_malloc():
    """Give memory back to the system, where glibc allows it (elsewhere: nothing).

    Compiling this script leaves ~4 MB of freed heap that the supervisor,
    forked after it, would keep for its whole life: trim it. And the relay's
    buffers grow with bursts of output and are dropped after; glibc by
    default raises its mmap threshold to the biggest block freed, so later
    ones come from a heap that never shrinks (24 MB idle after 100 MB of
    output, against 16): a fixed threshold keeps big buffers mapped apart and
    unmapped when freed."""
    libc_call("mallopt", -3, 128 << 10)  # M_MMAP_THRESHOLD
    trim_memory()


_scratch = []


def scratch():
    """The one buffer every socket read goes into (the supervisor has one
    thread; what is read is copied out before the next read). A fresh
    READ_SIZE bytes object per read is above the mmap threshold
    (tune_malloc): an mmap, an mremap and a munmap, and faulted-in pages,
    for each message of a few hundred bytes."""
    if not _scratch:
        _scratch.append(bytearray(READ_SIZE))
    return _scratch[0]


class Endpoint(object):
    """A selector key's data for a socket whose handler wants the event mask."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn


# A ZMTP 3.0 client's greeting: signature (empty routing id), version 3.0,
# mechanism NULL, not as-server. Sent for a client whose handshake the
# local side answered (zmtp "front"): the client's own READY follows in
# the stream.
ZMTP_GREETING = (b"\xff" + b"\x00" * 7 + b"\x01\x7f" + b"\x03\x00" + b"NULL" + b"\x00" * 16
                 + b"\x00" + b"\x00" * 31)


class Stream(object):
    reads = 1  # kernel reads per wakeup

    def __init__(self, sup, sid, channel, ks):
        self.sup = sup
        self.id = sid
        self.channel = channel
        self.ks = ks
        self.cs = None  # the channel it is relayed on now; None while the local side is away
        self.notes = False  # the local side takes N frames
        self.to_k = bytearray()  # received, not yet written to the kernel
        self.to_c = bytearray()  # frames (or a data frame's rest) not yet taken by the channel
        self.blocked = False  # the channel took less than it was given: wait until it is writable
        self.sent = bytearray()  # kernel bytes not yet acknowledged (a PubStream keeps more in its spill)
        self.base = 0  # stream offset of sent[0]
        self.sendpos = 0  # stream offset of the next kernel byte to frame for the channel
        self.recv = 0  # bytes received from the local side
        self.acked = 0  # what the last ack said was delivered to the kernel
        self.inbuf = bytearray()
        self.closed = False
        self.k_eof = False  # the kernel closed its side: the stream ends once the rest is delivered
        self.ev = {}  # sock -> registered events
        self.k_ep = Endpoint(self.on_kernel)
        self.c_ep = None
        self.k_skip = 0  # kernel bytes to drop: its greeting, which the client got from the local side
        self.k_cmd = None  # the header of the kernel's READY being dropped, or None
        # "front": the client's READY goes to the kernel, what follows it
        # waits in c_held until the kernel's READY came (libzmq takes a
        # message that arrives before it sent its own READY for a second
        # READY, and drops the connection).
        self.c_ready = None  # header bytes of the client's READY, while being passed
        self.c_left = 0  # bytes of the client's READY still to pass
        self.c_held = None

    def zmtp(self, mode):
        """Do the kernel's side of a handshake the local side answered:
        "front" sends the kernel a client's greeting (the client's READY
        comes next in the stream) and drops the kernel's greeting and
        READY; "strip10" drops the kernel's signature only."""
        if mode == "front":
            self.send_k(ZMTP_GREETING)
            self.k_skip, self.k_cmd = 64, bytearray()
            self.c_ready, self.c_held = bytearray(), bytearray()
        elif mode == "strip10":
            self.k_skip = 10

    def drop_handshake(self, data):
        """What of data (read from the kernel) is past the handshake dropped here."""
        if self.k_skip:
            n = min(self.k_skip, len(data))
            self.k_skip -= n
            data = data[n:]
            if self.k_skip:
                return b""
        while self.k_cmd is not None and data:
            h = self.k_cmd
            if not h:
                h.append(data[0])
                data = data[1:]
                continue
            need = 9 if h[0] & 2 else 2
            if len(h) < need:
                take = need - len(h)
                h += data[:take]
                data = data[take:]
                if len(h) < need:
                    return b""
                size = h[1] if need == 2 else int.from_bytes(bytes(h[1:9]), "big")
                self.k_skip = size
                self.k_cmd = None  # the command's header is read: its body goes with k_skip
                return self.drop_handshake(data)
        if not self.k_skip and self.k_cmd is None and self.c_held is not None:
            held, self.c_held = self.c_held, None  # the kernel's READY is in: let the client's messages go
            if held:
                self.send_k(bytes(held))
        return data

    def to_kernel(self, body):
        """Stream bytes for the kernel; in "front" mode, those after the
        client's READY wait for the kernel's (see c_held)."""
        while self.c_ready is not None and body:
            h = self.c_ready
            if self.c_left:
                n = min(self.c_left, len(body))
                self.send_k(body[:n])
                body = body[n:]
                self.c_left -= n
                if not self.c_left:
                    self.c_ready = None
                continue
            need = 9 if h and h[0] & 2 else 2
            take = need - len(h)
            h += body[:take]
            self.send_k(body[:take])
            body = body[take:]
            if len(h) >= 2 and len(h) == (9 if h[0] & 2 else 2):
                self.c_left = h[1] if len(h) == 2 else int.from_bytes(bytes(h[1:9]), "big")
                if not self.c_left:
                    self.c_ready = None
        if not body:
            return
        if self.c_held is not None:
            self.c_held += body
        else:
            self.send_k(body)

    # What a PubStream (backlog.py) overrides: whether to read the kernel
    # now, where its bytes go, and how more of them come up into sent.

    def reading(self):
        return len(self.sent) < STREAM_CAP

    def take(self, data):
        self.sent += data

    def refill(self):
        """Move kept bytes up into sent; False if there were none."""
        return False

    def pending(self):
        """Kernel bytes kept beyond sent."""
        return 0

    def release(self):
        pass

    def note(self, text):
        """Tell the local side (its log, the running cells), if it listens."""
        if self.notes and self.cs is not None:
            b = text.encode("utf-8")[:FRAME_MAX]
            self.to_c += frame_header(FRAME_N, len(b)) + b
            self.pump()

    def watch(self, sock, ep, events):
        cur = self.ev.get(sock, 0)
        if events == cur:
            return
        if not cur:
            self.sup.sel.register(sock, events, ep)
        elif not events:
            self.sup.sel.unregister(sock)
        else:
            self.sup.sel.modify(sock, events, ep)
        self.ev[sock] = events

    def unwatch(self, sock):
        if self.ev.pop(sock, 0):
            try:
                self.sup.sel.unregister(sock)
            except (KeyError, ValueError):
                pass

    def update(self):
        if self.closed:
            return
        if not self.k_eof:
            k = selectors.EVENT_READ if self.reading() else 0
            if self.to_k:
                k |= selectors.EVENT_WRITE
            self.watch(self.ks, self.k_ep, k)
        if self.cs is not None:
            c = selectors.EVENT_READ
            if self.blocked:
                c |= selectors.EVENT_WRITE
            self.watch(self.cs, self.c_ep, c)

    def attach(self, sock, peer_recv, early, notes=False):
        """Relay on sock from now on; the local side has received peer_recv bytes."""
        if peer_recv < self.base or peer_recv > self.sendpos:
            self.sup.answer_sock(sock, {"ok": False, "code": "bad_request",
                                        "error": "stream %s cannot resume at byte %d" % (self.id, peer_recv)})
            return
        self.detach(expire=False)
        self.sup.cancel("stream-" + self.id)
        self.sent = drop_front(self.sent, peer_recv - self.base)
        self.base = self.sendpos = peer_recv
        self.cs = sock
        self.notes = notes
        self.c_ep = Endpoint(self.on_channel)
        self.inbuf = bytearray()
        self.acked = self.recv  # the reply line says as much
        self.to_c = bytearray((json.dumps({"ok": True, "id": self.id, "recv": self.recv}) + "\n").encode())
        self.blocked = False
        self.pump()
        if early and self.cs is not None:
            self.inbuf += early
            self.frames()
        self.update()

    def detach(self, expire=True):
        """The channel is gone: keep the kernel side until one comes back, within the grace period."""
        if self.cs is not None:
            self.unwatch(self.cs)
            try:
                self.cs.close()
            except OSError:
                pass
            self.cs = None
            self.to_c = bytearray()
            self.blocked = False
        if expire and not self.closed:
            self.sup.timer("stream-" + self.id, self.sup.grace, self.close)
            self.update()

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.sup.streams.pop(self.id, None)
        self.sup.cancel("stream-" + self.id)
        if not self.k_eof:
            self.unwatch(self.ks)
            self.ks.close()
        self.release()
        if self.cs is not None:
            self.unwatch(self.cs)
            self.to_c += frame_header(FRAME_F, 0)
            send_all(self.cs, bytes(self.to_c), timeout=1.0)
            self.cs.close()
            self.cs = None

    def kernel_closed(self):
        """The kernel closed its socket (it exited or restarts): end the
        stream once the local side has what was read before."""
        self.k_eof = True
        self.unwatch(self.ks)
        self.ks.close()
        self.to_k = bytearray()
        self.pump()  # which closes the stream once all is out
        self.update()

    def pump(self):
        """Write to the channel what it takes: queued frames, then kernel bytes from sendpos on."""
        while self.cs is not None and not self.blocked:
            if self.to_c:
                try:
                    n = self.cs.send(self.to_c)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    self.detach()
                    return
                self.to_c = drop_front(self.to_c, n)
                self.blocked = bool(self.to_c)
                continue
            off = self.sendpos - self.base
            k = min(len(self.sent) - off, SEND_CHUNK)
            if k <= 0:
                if self.refill():
                    continue
                if self.k_eof and not self.pending():
                    self.close()
                return
            hdr = frame_header(FRAME_D, k)
            with memoryview(self.sent) as mv, mv[off:off + k] as chunk:
                try:
                    n = self.cs.sendmsg((hdr, chunk))
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    n = -1
                if 0 < n < HDR_LEN + k:  # the rest of the frame goes first next time
                    self.to_c += hdr[n:] if n < HDR_LEN else b""
                    self.to_c += chunk[max(0, n - HDR_LEN):]
            if n < 0:
                self.detach()
                return
            if n == 0:
                self.blocked = True
                return
            self.sendpos += k

    def send_k(self, data):
        if not self.to_k:
            try:
                n = self.ks.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self.kernel_closed()
                return
            if n == len(data):
                return
            data = data[n:]
        self.to_k += data

    def on_kernel(self, mask):
        if self.closed or self.k_eof:
            return
        if mask & selectors.EVENT_WRITE and self.to_k:
            try:
                n = self.ks.send(self.to_k)
                self.to_k = drop_front(self.to_k, n)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.kernel_closed()
                return
            self.ack()
        if mask & selectors.EVENT_READ:
            got = False
            buf = scratch()
            with memoryview(buf) as mv:
                for _ in range(self.reads):
                    try:
                        n = self.ks.recv_into(buf)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        n = 0
                    if not n:
                        self.kernel_closed()
                        return
                    got = True
                    with mv[:n] as data:
                        if self.k_skip or self.k_cmd is not None:
                            data = self.drop_handshake(data)
                        if data:
                            self.take(data)
                    if n < READ_SIZE:
                        break  # drained: another read would only say so (the selector tells when more comes)
            if got:
                self.pump()
        self.update()

    def on_channel(self, mask):
        if self.closed or self.cs is None:
            return
        if mask & selectors.EVENT_WRITE:
            self.blocked = False
            self.pump()
        if mask & selectors.EVENT_READ and self.cs is not None:
            buf = scratch()
            try:
                n = self.cs.recv_into(buf, CHANNEL_READ)
            except (BlockingIOError, InterruptedError):
                n = None
            except OSError:
                n = 0
            if n == 0:
                self.detach()
                return
            if n:
                with memoryview(buf) as mv, mv[:n] as data:
                    self.inbuf += data
                self.frames()
        self.update()

    def frames(self):
        buf = self.inbuf
        off = 0
        while len(buf) - off >= HDR_LEN and not self.closed:
            kind = buf[off]
            n = int.from_bytes(buf[off + 1:off + HDR_LEN], "big")
            if kind not in (FRAME_D, FRAME_A, FRAME_F) or n > FRAME_MAX:  # N goes to the local side only
                self.sup.log("stream %s: bad frame %r/%d: dropping the channel" % (self.id, kind, n))
                self.detach()
                return
            if len(buf) - off < HDR_LEN + n:
                break
            body = buf[off + HDR_LEN:off + HDR_LEN + n]  # one copy (bytes() of it was a second)
            off += HDR_LEN + n
            if kind == FRAME_D:
                self.recv += n
                if not self.k_eof:
                    self.to_kernel(body)
            elif kind == FRAME_A and n == 8:
                acked = int.from_bytes(body, "big")
                if self.base <= acked <= self.sendpos:
                    if len(self.sent) >= TRIM_AFTER and acked - self.base > len(self.sent) // 2:
                        # A burst is being let go: once it is over, give
                        # back what the heap kept of it.
                        self.sup.timer("trim", 1.0, trim_memory)
                    self.sent = drop_front(self.sent, acked - self.base)
                    self.base = acked
                    if self.pending():
                        self.pump()  # room in sent for kept bytes
            elif kind == FRAME_F:
                self.close()
                return
        if self.closed or self.cs is None:
            return
        del buf[:off]
        self.ack()

    def ack(self):
        """Acknowledge what the kernel has taken. Acking what it has not taken
        yet would let the local side send without limit while the kernel is
        slow; this way to_k holds at most the local side's STREAM_CAP, and the
        channel is always read (acks arrive on it)."""
        delivered = self.recv - len(self.to_k) - len(self.c_held or b"")
        if delivered - self.acked >= ACK_EVERY and self.cs is not None:
            self.acked = delivered
            self.to_c += frame_header(FRAME_A, 8) + delivered.to_bytes(8, "big")
            self.pump()
