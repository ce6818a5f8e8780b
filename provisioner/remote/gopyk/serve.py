# gopyk remote launcher: serve — the supervisor's control socket.
#
# Owns: class ControlServer, the Supervisor's half that serves ctl: one JSON
# request line per connection (status, interrupt, persist, stream, lease,
# shutdown, restart), leases with their pings and in-band requests (LEASE_OPS),
# events to lease holders (kernel_exited, restarted, reply), the grace
# period, and handing a connection whose request is "stream" to
# relay.Stream, backlog.PubStream for iopub (parked while the kernel starts).
# May not: start or signal the kernel itself (it asks supervisor.py's methods:
# stop, start_kernel, signal_kernel), put the key in an answer, write to stdout.

import json
import selectors
import signal
import socket
import time

from .common import CHANNELS, send_all
from .backlog import PubStream
from .relay import Stream


# A lease that closes while its pings were on time was closed by its holder:
# gopyk-kernel was killed (jupyter_client's shutdown/restart with now=True),
# not cut off by the network, which goes silent first. The kernel then stops
# after this long unless a lease arrives (a reconnect after a crashed sshd).
ABANDONED = 4.0

# Requests a lease may carry (answered in-band, see request()).
LEASE_OPS = ("interrupt", "status", "persist")


class Conn(object):
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.lease = False
        self.ping_timeout = 0.0
        self.last_seen = time.monotonic()


class ControlServer(object):
    """The control socket's half of Supervisor (a mixin: self is the Supervisor)."""

    # -- leases and grace

    def notify(self, event):
        data = (json.dumps(event) + "\n").encode()
        for c in self.leases():
            if not send_all(c.sock, data):
                self.drop(c)

    def arm_grace(self, abandoned=False):
        if self.persistent or self.leases() or self.state in ("stopping", "exited"):
            self.cancel("grace")
            return
        delay = min(ABANDONED, self.grace) if abandoned else self.grace
        when = self.timers.get("grace", (None,))[0]
        if when is not None and when <= time.monotonic() + delay:
            return
        if abandoned:
            self.log("lease closed while its pings were on time: its gopyk-kernel is gone (killed), not the network;"
                     " shutting down in %gs unless a lease arrives" % delay)
        else:
            self.log("no lease: shutting down in %gs unless one arrives" % delay)
        self.timer("grace", delay, self.grace_expired)

    def grace_expired(self):
        self.log("grace period over without a lease: shutting the kernel down")
        self.stop(0, lambda info: self.finish())

    # -- control socket

    def accept(self):
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        c = Conn(sock)
        self.conns[sock.fileno()] = c
        self.sel.register(sock, selectors.EVENT_READ, c)

    def drop(self, c, eof=False):
        # eof: the peer closed it (not a ping timeout or a failed send). On
        # time: the last ping at most two intervals ago (ping_timeout is
        # three): a loaded machine can delay a ping by seconds, and a dead
        # link is found out by sshd's ClientAlive long after.
        abandoned = eof and c.lease and c.ping_timeout > 0 and time.monotonic() - c.last_seen <= c.ping_timeout * 2 / 3
        fd = c.sock.fileno()
        if fd in self.conns:
            del self.conns[fd]
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        c.sock.close()
        if c.lease:
            c.lease = False
            self.log("lease closed (%d left)" % len(self.leases()))
            if self.state == "exited" and not self.leases() and "linger" in self.timers:
                self.finish()
            self.arm_grace(abandoned)

    def readable(self, c):
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(c, eof=True)
            return
        c.last_seen = time.monotonic()
        c.buf += data
        if len(c.buf) > 1 << 20:
            self.drop(c)
            return
        while b"\n" in c.buf and c.sock.fileno() in self.conns:
            line, c.buf = c.buf.split(b"\n", 1)
            if line.strip():
                self.request(c, line)

    def answer(self, c, obj, close=True):
        ok = send_all(c.sock, (json.dumps(obj) + "\n").encode())
        if close or not ok:
            self.drop(c)

    def request(self, c, line):
        try:
            req = json.loads(line.decode())
            op = req.get("op")
        except (ValueError, UnicodeDecodeError, AttributeError):
            if not c.lease:
                self.answer(c, {"ok": False, "code": "bad_request", "error": "request is not a JSON object"})
            return
        if c.lease:
            # Pings keep a lease alive. The quick requests ride on it too,
            # answered as a "reply" event with their id: the lease is always
            # open, so an interrupt costs one round trip, not a connection's
            # two.
            if op in LEASE_OPS and "id" in req:
                self.lease_request(c, req)
            return
        if op in LEASE_OPS:
            self.answer(c, self.quick(op, req))
        elif op == "stream":
            self.open_stream(c, req)
        elif op == "lease":
            c.lease = True
            pt = req.get("ping_timeout")
            c.ping_timeout = float(pt) if isinstance(pt, (int, float)) and pt > 0 else 0.0
            self.cancel("grace")
            self.log("lease opened (%d now)" % len(self.leases()))
            self.answer(c, dict(self.status(), lease_ops=list(LEASE_OPS)), close=False)
        elif op == "shutdown":
            wait = req.get("timeout")
            wait = float(wait) if isinstance(wait, (int, float)) and wait >= 0 else self.shutdown_timeout
            self.log("shutdown requested")
            self.cancel("linger")

            def done(info):
                self.answer(c, dict(info, ok=True))
                self.notify(dict(info, event="kernel_exited", reason="shutdown"))
                self.finish()

            self.stop(wait, done)
        elif op == "restart":
            if self.state not in ("running", "exited") or self.want_exit:
                self.answer(c, {"ok": False, "code": "busy", "error": "cannot restart: the kernel is %s" % self.state})
                return
            wait = req.get("timeout")
            wait = float(wait) if isinstance(wait, (int, float)) and wait >= 0 else self.shutdown_timeout
            self.log("restart requested")
            self.cancel("linger")
            self.restart(wait, c)
        else:
            self.answer(c, {"ok": False, "code": "bad_request", "error": "unknown op %r" % (op,)})

    def quick(self, op, req):
        """The answer to a request that needs no waiting (LEASE_OPS)."""
        if op == "status":
            return self.status()
        if op == "interrupt":
            if self.state != "running":
                return {"ok": False, "code": "not_running", "error": "the kernel is %s" % self.state}
            self.log("interrupt: SIGINT to the kernel")
            self.signal_kernel(signal.SIGINT)
            return {"ok": True}
        self.persistent = bool(req.get("persistent"))  # persist
        self.log("persistent = %s" % self.persistent)
        self.arm_grace()
        return self.status()

    def lease_request(self, c, req):
        ans = dict(self.quick(req["op"], req))
        ans["event"], ans["id"] = "reply", req["id"]
        if not send_all(c.sock, (json.dumps(ans) + "\n").encode()):
            self.drop(c)

    # -- streams

    def park(self, c, req):
        """A new stream asked for while the kernel starts: it waits here, its
        early bytes unread in the socket, until the kernel accepts (flush)."""
        self.sel.unregister(c.sock)
        self.conns.pop(c.sock.fileno(), None)
        self.parked.append((c, req))

    def flush_parked(self):
        """Serve the parked streams once the kernel runs, or fail them if it will not."""
        if not self.parked or self.state in ("new", "starting"):
            return
        parked, self.parked = self.parked, []
        for c, req in parked:
            if self.state == "running" and not self.want_exit:
                self.conns[c.sock.fileno()] = c
                self.sel.register(c.sock, selectors.EVENT_READ, c)
                self.open_stream(c, req)
            else:
                self.answer_sock(c.sock, {"ok": False, "code": "not_running", "error": "the kernel is %s" % self.state})

    def open_stream(self, c, req):
        """Turn control connection c into the channel of a relayed stream: a new one, or one resumed."""
        sid, channel, recv = req.get("id") or "", req.get("channel"), req.get("recv") or 0
        if not isinstance(recv, int) or recv < 0:
            self.answer(c, {"ok": False, "code": "bad_request", "error": "stream recv must be a byte count"})
            return
        if sid:
            s = self.streams.get(sid)
            if s is None:
                self.answer(c, {"ok": False, "code": "no_stream", "error": "stream %s is gone" % sid})
                return
        else:
            if channel not in CHANNELS:
                self.answer(c, {"ok": False, "code": "bad_request", "error": "unknown channel %r" % (channel,)})
                return
            if self.state in ("new", "starting") and not self.want_exit:
                self.park(c, req)
                return
            if self.state != "running":
                self.answer(c, {"ok": False, "code": "not_running", "error": "the kernel is %s" % self.state})
                return
            addr = dict(zip(CHANNELS, self.addrs()))[channel]
            try:
                if isinstance(addr, str):
                    ks = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    ks.settimeout(3.0)
                    try:
                        ks.connect(addr)
                    except OSError:
                        ks.close()
                        raise
                else:
                    ks = socket.create_connection(addr, timeout=3.0)
                    ks.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as e:
                self.answer(c, {"ok": False, "code": "connect_failed",
                                "error": "connect to the kernel's %s socket: %s" % (channel, e)})
                return
            ks.setblocking(False)
            self.stream_seq += 1
            s = (PubStream if channel == "iopub" else Stream)(self, "%s-%d" % (channel, self.stream_seq), channel, ks)
            s.zmtp(req.get("zmtp"))
            self.streams[s.id] = s
        fd = c.sock.fileno()
        self.conns.pop(fd, None)
        self.sel.unregister(c.sock)
        early, c.buf = c.buf, b""
        s.attach(c.sock, recv, early, bool(req.get("notes")))

    def answer_sock(self, sock, obj):
        send_all(sock, (json.dumps(obj) + "\n").encode())
        sock.close()

    def restart(self, wait, c):
        def started(err):
            if err:
                self.answer(c, err)
                if err.get("code") == "stopped":
                    return  # whoever stopped it finishes the job
                self.notify(dict(err, event="kernel_exited", reason="restart_failed"))
                self.finish()
                return
            self.restarts += 1
            st = self.status()
            self.answer(c, st)
            self.notify({"event": "restarted", "status": st})

        def stopped(info):
            if self.want_exit:
                return
            self.choose_ports(reuse=True)
            self.start_kernel(started)

        self.stop(wait, stopped)
