# gopyk remote launcher: Python 3.6+ standard library only.
#
# The bootstrap in command.go runs this file with two globals: PARAMS (the JSON
# line read from stdin, the HMAC key included) and STDIN (the buffered stdin).
# It replies with framed lines on stdout (MAGIC + JSON) so that whatever shell
# rc files print is ignored by the reader. A launch forks a detached
# supervisor that owns the kernel and serves a control socket in a private
# run directory; the launcher process itself exits after its one reply.
#
# Nothing here may ever print, log or put on a command line the key.

import errno
import json
import os
import selectors
import signal
import socket
import stat
import subprocess
import sys
import time

MAGIC = "@@gopyk1@@"
PROTOCOL = 1
SOCK_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS/BSD
CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
TAIL_LINES = 20
TAIL_BYTES = 4096
KILL_AFTER = 5.0  # seconds between SIGTERM and SIGKILL
LINGER = 10.0  # seconds a supervisor whose kernel exited waits for a restart
DEFAULT_GRACE = 600.0
# A lease that closes while its pings were on time was closed by its holder:
# gopyk-kernel was killed (jupyter_client's shutdown/restart with now=True),
# not cut off by the network, which goes silent first. The kernel then stops
# after this long unless a lease arrives (a reconnect after a crashed sshd).
ABANDONED = 4.0
DEFAULT_SHUTDOWN = 10.0
DEFAULT_LAUNCH = 60.0


class Fail(Exception):
    """An error reply: code is machine-readable, message is for humans."""

    def __init__(self, code, message, **extra):
        Exception.__init__(self, message)
        self.code = code
        self.extra = extra

    def reply(self):
        d = {"ok": False, "code": self.code, "error": str(self)}
        d.update(self.extra)
        return d


# ---------------------------------------------------------------- output


def write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def frame(obj):
    # The leading newline separates us from rc-file output without one.
    return ("\n" + MAGIC + json.dumps(obj, separators=(",", ":")) + "\n").encode()


def reply(obj):
    obj.setdefault("protocol", PROTOCOL)
    try:
        write_all(1, frame(obj))
    except OSError:
        pass  # the local side went away; nothing left to tell


# ---------------------------------------------------------------- small helpers


def tail(path, lines=TAIL_LINES):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])


def write_private(path, data):
    """Write data to path atomically, mode 0600."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def private_dir(path):
    """Create path (0700) or check that an existing one is ours and private."""
    try:
        os.makedirs(path, 0o700)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise Fail("run_dir", "%s is not a directory owned by uid %d" % (path, os.getuid()))
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def pid_alive(pid):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    try:  # a zombie is not alive (our parent may be slow to reap us)
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def host_facts():
    u = os.uname()
    try:
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        user = os.environ.get("USER", str(os.getuid()))
    return {
        "hostname": socket.gethostname(),
        "user": user,
        "uname": " ".join([u.sysname, u.nodename, u.release, u.version, u.machine]),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "python_executable": sys.executable,
    }


def num(params, name, default):
    v = params.get(name)
    if v is None:
        return default
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise Fail("bad_params", "%s must be a number of seconds" % name)
    return float(v)


# ---------------------------------------------------------------- kernel specs


def envset(name):
    return os.environ.get(name, "no").lower() not in ("no", "n", "false", "off", "0", "0.0")


def jupyter_data_dir():
    if os.environ.get("JUPYTER_DATA_DIR"):
        return os.environ["JUPYTER_DATA_DIR"]
    home = os.path.realpath(os.path.expanduser("~"))
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Jupyter")
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    return os.path.join(xdg, "jupyter")


def jupyter_path():
    """jupyter_core.paths.jupyter_path() for this python, without importing it."""
    paths = []
    if os.environ.get("JUPYTER_PATH"):
        paths.extend(p.rstrip(os.sep) for p in os.environ["JUPYTER_PATH"].split(os.pathsep) if p)
    user = [jupyter_data_dir()]
    import site

    if site.ENABLE_USER_SITE:
        base = site.getuserbase() if hasattr(site, "getuserbase") else getattr(site, "USER_BASE", None)
        if base:
            d = os.path.join(base, "share", "jupyter")
            if d not in user:
                user.append(d)
    system = ["/usr/local/share/jupyter", "/usr/share/jupyter"]
    env = [p for p in [os.path.join(sys.prefix, "share", "jupyter")] if p not in system]
    if envset("JUPYTER_PREFER_ENV_PATH"):
        paths.extend(env + user)
    else:
        paths.extend(user + env)
    return paths + system


def native_kernel():
    """ipykernel's built-in python3 spec, as jupyter_client offers it."""
    import importlib.util

    try:
        found = importlib.util.find_spec("ipykernel")
    except (ImportError, ValueError):
        found = None
    if found is None:
        return None
    res = os.path.join(os.path.dirname(found.origin or ""), "resources")
    return {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "env": {},
        "interrupt_mode": "signal",
        "resource_dir": res,
    }


def find_spec(name):
    """Find kernel spec `name` (case-insensitive) exactly as jupyter_client does."""
    want = name.lower()
    dirs = [os.path.join(p, "kernels") for p in jupyter_path()]
    seen = []
    for d in dirs:
        try:
            entries = sorted(os.listdir(d))
        except OSError:
            continue
        for f in entries:
            path = os.path.join(d, f)
            if not os.path.isfile(os.path.join(path, "kernel.json")):
                continue
            if f.lower() == want:
                return load_spec(path)
            if f.lower() not in seen:
                seen.append(f.lower())
    if want == "python3":
        spec = native_kernel()
        if spec:
            return spec
    elif native_kernel() and "python3" not in seen:
        seen.append("python3")
    raise Fail(
        "unknown_kernel",
        "no kernel spec named %r for %s (searched %s); kernel specs found: %s"
        % (name, sys.executable, ", ".join(dirs), ", ".join(sorted(seen)) or "none"),
        kernel_names=sorted(seen),
    )


def load_spec(path):
    fn = os.path.join(path, "kernel.json")
    try:
        with open(fn, "rb") as f:
            spec = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise Fail("bad_spec", "cannot read kernel spec %s: %s" % (fn, e))
    argv = spec.get("argv") if isinstance(spec, dict) else None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise Fail("bad_spec", "kernel spec %s: argv must be a non-empty list of strings" % fn)
    env = spec.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise Fail("bad_spec", "kernel spec %s: env must map names to strings" % fn)
    mode = spec.get("interrupt_mode") or "signal"
    if mode not in ("signal", "message"):
        raise Fail("bad_spec", "kernel spec %s: interrupt_mode must be signal or message" % fn)
    return {"argv": argv, "env": env, "interrupt_mode": mode, "resource_dir": path}


def format_argv(argv, connection_file, resource_dir):
    """jupyter_client's KernelManager.format_kernel_cmd plus launch_kernel's expanduser."""
    import re

    cmd = list(argv)
    if cmd[0] in ("python", "python%d" % sys.version_info[0], "python%d.%d" % sys.version_info[:2]):
        cmd[0] = sys.executable
    ns = {"connection_file": os.path.realpath(connection_file), "prefix": sys.prefix}
    if resource_dir:
        ns["resource_dir"] = resource_dir
    pat = re.compile(r"\{([A-Za-z0-9_]+)\}")
    cmd = [pat.sub(lambda m: ns.get(m.group(1), m.group()), a) for a in cmd]
    return [os.path.expanduser(a) for a in cmd]


def kernel_env(spec_env, extra):
    from string import Template

    env = dict(os.environ)
    env.update({k: Template(v).safe_substitute(env) for k, v in spec_env.items()})
    env.update(extra)
    return env


# ---------------------------------------------------------------- run dirs


def run_bases():
    return [
        os.path.join(os.path.expanduser("~"), ".gopyk", "run"),
        "/tmp/gopyk-%d" % os.getuid(),
    ]


def fits(run_dir):
    return len((run_dir + "/ctl").encode()) <= SOCK_MAX and len((run_dir + "/k-5").encode()) <= SOCK_MAX


def new_run_dir():
    """Make a private run dir and bind its control socket there. Falls back to
    /tmp when the home's paths are too long for unix sockets or its file
    system cannot hold sockets (AFS, some FUSE mounts)."""
    import binascii

    rid = binascii.hexlify(os.urandom(4)).decode()
    errors = []
    for base in run_bases():
        path = os.path.join(base, rid)
        if not fits(path):
            errors.append("%s: socket paths would exceed %d bytes" % (base, SOCK_MAX))
            continue
        try:
            if base == run_bases()[0]:
                private_dir(os.path.dirname(base))  # ~/.gopyk
            private_dir(base)
            os.mkdir(path, 0o700)
        except (OSError, Fail) as e:
            errors.append("%s: %s" % (base, e))
            continue
        try:
            return path, control_listener(path)
        except OSError as e:
            rmtree(path)
            errors.append("%s: cannot create a unix socket there: %s" % (base, e))
    raise Fail("run_dir", "cannot create a run directory: " + "; ".join(errors))


def control_listener(run_dir):
    ctl = os.path.join(run_dir, "ctl")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o077)
        try:
            listener.bind(ctl)
        finally:
            os.umask(old)
        os.chmod(ctl, 0o600)
        listener.listen(16)
    except OSError:
        listener.close()
        raise
    return listener


def free_tcp_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tcp_port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as zmq does
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def rmtree(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- control client (used by the exec actions)


def control_call(run_dir, request, timeout=5.0):
    path = os.path.join(run_dir, "ctl")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
                raise Fail("gone", "no gopyk supervisor at %s (the kernel exited or was shut down)" % run_dir)
            raise Fail("control", "cannot reach the supervisor at %s: %s" % (path, e))
        s.sendall((json.dumps(request) + "\n").encode())
        buf = b""
        while b"\n" not in buf:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                raise Fail("control", "the supervisor at %s did not answer within %gs" % (run_dir, timeout))
            if not chunk:
                raise Fail("gone", "the supervisor at %s closed the connection without answering" % run_dir)
            buf += chunk
        return json.loads(buf.split(b"\n", 1)[0].decode())
    finally:
        s.close()


def list_kernels():
    """Every supervisor of this user; stale run dirs (supervisor dead) are removed."""
    kernels, removed = [], []
    here = socket.gethostname()
    for base in run_bases():
        try:
            names = sorted(os.listdir(base))
        except OSError:
            continue
        for name in names:
            d = os.path.join(base, name)
            try:
                r = control_call(d, {"op": "status"}, timeout=2.0)
                kernels.append(r)
                continue
            except Fail as e:
                if e.code != "gone":
                    kernels.append(dict(e.reply(), run_dir=d))
                    continue
            # Dead supervisor: remove its leftovers once clearly not a launch in progress.
            try:
                with open(os.path.join(d, "state.json")) as f:
                    st = json.load(f)
                if st.get("hostname", here) != here:
                    # A home shared by several login nodes: not ours to judge.
                    kernels.append({"ok": False, "code": "elsewhere", "run_dir": d, "hostname": st["hostname"],
                                    "error": "this kernel runs on %s" % st["hostname"]})
                    continue
                spid = int(st.get("supervisor_pid", 0))
                if pid_alive(spid):
                    continue
                if st.get("job_id"):
                    job = orphan_job(str(st["job_id"]))
                    if job:
                        removed.append(job)
                kpid = int(st.get("kernel_pid", 0))
                if kpid > 0 and pid_alive(kpid):
                    kernels.append({"ok": False, "code": "orphan", "run_dir": d, "kernel_pid": kpid,
                                    "error": "kernel %d is running without its supervisor" % kpid})
                    continue
            except (OSError, ValueError, TypeError, AttributeError):
                try:
                    if time.time() - os.lstat(d).st_mtime < 120:
                        continue
                except OSError:
                    continue
            rmtree(d)
            removed.append(d)
    removed.extend(old_launchers())
    return {"ok": True, "kernels": kernels, "removed": removed}


def old_launchers(days=30):
    """Remove cached launchers of other gopyk versions not uploaded for `days`
    (one still in use elsewhere is simply uploaded again)."""
    me = os.path.realpath(list_kernels.__code__.co_filename)
    d = os.path.dirname(me)
    if not os.path.basename(me).startswith("launcher-"):
        return []
    gone = []
    now = time.time()
    for sub in ("", "__pycache__"):
        try:
            names = os.listdir(os.path.join(d, sub))
        except OSError:
            continue
        for n in names:
            p = os.path.join(d, sub, n)
            if not n.startswith("launcher-") or n.split(".")[0] == os.path.basename(me).split(".")[0]:
                continue
            try:
                if now - os.lstat(p).st_mtime > days * 86400:
                    os.unlink(p)
                    gone.append(p)
            except OSError:
                pass
    return gone


# ---------------------------------------------------------------- relayed streams
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

STREAM_CAP = 2 << 20  # unacknowledged bytes kept per direction; reading stops beyond (the SSH window is 2 MiB too)
PENDING_CAP = 256 << 10  # frames queued for a slow channel; reading the kernel stops beyond
ACK_EVERY = 256 << 10
READ_SIZE = 256 << 10  # big reads: fewer wakeups, frames and SSH writes for bulk output
FRAME_MAX = 1 << 20
HDR_LEN = 5
FRAME_D, FRAME_A, FRAME_F = 68, 65, 70


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


def drop_front(buf, n):
    """buf without its first n bytes. Deleting at the front keeps a
    bytearray's allocation, so when most of it goes the rest is copied
    into a new one and the memory goes back."""
    if n >= len(buf):
        return bytearray()
    if n > len(buf) - n:
        return bytearray(memoryview(buf)[n:])
    del buf[:n]
    return buf


class Endpoint(object):
    """A selector key's data for a socket whose handler wants the event mask."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn


class Stream(object):
    def __init__(self, sup, sid, channel, ks):
        self.sup = sup
        self.id = sid
        self.channel = channel
        self.ks = ks
        self.cs = None  # the channel it is relayed on now; None while the local side is away
        self.to_k = bytearray()  # received, not yet written to the kernel
        self.to_c = bytearray()  # frames not yet written to the channel
        self.sent = bytearray()  # kernel bytes sent (or to send) and not yet acknowledged
        self.base = 0  # stream offset of sent[0]
        self.recv = 0  # bytes received from the local side
        self.acked = 0  # what the last ack said was delivered to the kernel
        self.inbuf = bytearray()
        self.closed = False
        self.ev = {}  # sock -> registered events
        self.k_ep = Endpoint(self.on_kernel)
        self.c_ep = None

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
        k = 0
        if len(self.sent) < STREAM_CAP and len(self.to_c) < PENDING_CAP:
            k |= selectors.EVENT_READ
        if self.to_k:
            k |= selectors.EVENT_WRITE
        self.watch(self.ks, self.k_ep, k)
        if self.cs is not None:
            c = selectors.EVENT_READ
            if self.to_c:
                c |= selectors.EVENT_WRITE
            self.watch(self.cs, self.c_ep, c)

    def attach(self, sock, peer_recv, early):
        """Relay on sock from now on; the local side has received peer_recv bytes."""
        if peer_recv < self.base or peer_recv > self.base + len(self.sent):
            self.sup.answer_sock(sock, {"ok": False, "code": "bad_request",
                                        "error": "stream %s cannot resume at byte %d" % (self.id, peer_recv)})
            return
        self.detach(expire=False)
        self.sup.cancel("stream-" + self.id)
        self.sent = drop_front(self.sent, peer_recv - self.base)
        self.base = peer_recv
        self.cs = sock
        self.c_ep = Endpoint(self.on_channel)
        self.inbuf = bytearray()
        self.acked = self.recv  # the reply line says as much
        out = bytearray((json.dumps({"ok": True, "id": self.id, "recv": self.recv}) + "\n").encode())
        view = memoryview(self.sent)
        for i in range(0, len(view), 1 << 16):
            chunk = view[i:i + (1 << 16)]
            out += frame_header(FRAME_D, len(chunk))
            out += chunk
        view.release()
        self.to_c = out
        self.flush_c()
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
        if expire and not self.closed:
            self.sup.timer("stream-" + self.id, self.sup.grace, self.close)
            self.update()

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.sup.streams.pop(self.id, None)
        self.sup.cancel("stream-" + self.id)
        self.unwatch(self.ks)
        self.ks.close()
        if self.cs is not None:
            self.unwatch(self.cs)
            self.to_c += frame_header(FRAME_F, 0)
            send_all(self.cs, bytes(self.to_c), timeout=1.0)
            self.cs.close()
            self.cs = None

    def send_c(self, *parts):
        """Write parts to the channel (one sendmsg, no copy), queueing what it does not take now."""
        if self.cs is None:
            return
        if self.to_c:
            for p in parts:
                self.to_c += p
            return
        try:
            n = self.cs.sendmsg(parts)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.detach()
            return
        for p in parts:
            if n < len(p):
                self.to_c += memoryview(p)[n:]
            n = max(0, n - len(p))

    def flush_c(self):
        try:
            n = self.cs.send(self.to_c)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.detach()
            return
        self.to_c = drop_front(self.to_c, n)

    def send_k(self, data):
        if not self.to_k:
            try:
                n = self.ks.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self.close()
                return
            if n == len(data):
                return
            data = data[n:]
        self.to_k += data

    def on_kernel(self, mask):
        if self.closed:
            return
        if mask & selectors.EVENT_WRITE and self.to_k:
            try:
                n = self.ks.send(self.to_k)
                self.to_k = drop_front(self.to_k, n)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.close()
                return
            self.ack()
        if mask & selectors.EVENT_READ:
            try:
                data = self.ks.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self.close()  # the kernel closed it: it exited or restarts
                return
            if data:
                self.sent += data
                self.send_c(frame_header(FRAME_D, len(data)), data)
        self.update()

    def on_channel(self, mask):
        if self.closed or self.cs is None:
            return
        if mask & selectors.EVENT_WRITE and self.to_c:
            self.flush_c()
        if mask & selectors.EVENT_READ and self.cs is not None:
            try:
                data = self.cs.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self.detach()
                return
            if data:
                self.inbuf += data
                self.frames()
        self.update()

    def frames(self):
        buf = self.inbuf
        off = 0
        while len(buf) - off >= HDR_LEN and not self.closed:
            kind = buf[off]
            n = int.from_bytes(bytes(buf[off + 1:off + HDR_LEN]), "big")
            if kind not in (FRAME_D, FRAME_A, FRAME_F) or n > FRAME_MAX:
                self.sup.log("stream %s: bad frame %r/%d: dropping the channel" % (self.id, kind, n))
                self.detach()
                return
            if len(buf) - off < HDR_LEN + n:
                break
            body = bytes(buf[off + HDR_LEN:off + HDR_LEN + n])
            off += HDR_LEN + n
            if kind == FRAME_D:
                self.recv += n
                self.send_k(body)
            elif kind == FRAME_A and n == 8:
                acked = int.from_bytes(body, "big")
                if self.base <= acked <= self.base + len(self.sent):
                    if len(self.sent) >= TRIM_AFTER and acked - self.base > len(self.sent) // 2:
                        # A burst is being let go: once it is over, give
                        # back what the heap kept of it.
                        self.sup.timer("trim", 1.0, trim_memory)
                    self.sent = drop_front(self.sent, acked - self.base)
                    self.base = acked
            elif kind == FRAME_F:
                self.close()
                return
        if self.closed:
            return
        del buf[:off]
        self.ack()

    def ack(self):
        """Acknowledge what the kernel has taken. Acking what it has not taken
        yet would let the local side send without limit while the kernel is
        slow; this way to_k holds at most the local side's STREAM_CAP, and the
        channel is always read (acks arrive on it)."""
        delivered = self.recv - len(self.to_k)
        if delivered - self.acked >= ACK_EVERY:
            self.acked = delivered
            self.send_c(frame_header(FRAME_A, 8) + delivered.to_bytes(8, "big"))


# ---------------------------------------------------------------- supervisor


class Conn(object):
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.lease = False
        self.ping_timeout = 0.0
        self.last_seen = time.monotonic()


class Supervisor(object):
    """Owns one kernel: starts, watches, signals and stops it; serves the control socket."""

    def __init__(self, params, spec, run_dir, listener, facts):
        self.p = params
        self.spec = spec
        self.run_dir = run_dir
        self.listener = listener
        self.facts = facts
        self.key = params["key"]
        self.transport = params.get("transport") or "ipc"
        self.persistent = bool(params.get("persistent"))
        self.grace = num(params, "grace_seconds", DEFAULT_GRACE)
        self.shutdown_timeout = num(params, "shutdown_timeout", DEFAULT_SHUTDOWN)
        self.launch_timeout = num(params, "launch_timeout", DEFAULT_LAUNCH)
        self.kill_after = num(params, "kill_after", KILL_AFTER)
        self.cf = os.path.join(run_dir, "kernel.json")
        self.log_path = os.path.join(run_dir, "kernel.log")
        self.proc = None
        self.state = "new"  # starting, running, stopping, exited
        self.started = time.time()
        self.restarts = 0
        self.conns = {}
        self.streams = {}
        self.stream_seq = 0
        self.timers = {}
        self.stop_waiters = []  # callbacks run once the kernel has exited after stop()
        self.ready_cb = None
        self.exit_info = None
        self.sel = selectors.DefaultSelector()
        self.want_exit = False
        self.argv = []
        self.sup_log = None
        self.progress = lambda msg: None  # set by supervise() while the launch is pending

    # -- bookkeeping

    def log(self, msg):
        try:
            if self.sup_log is None:
                fd = os.open(os.path.join(self.run_dir, "supervisor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self.sup_log = os.fdopen(fd, "a")
            self.sup_log.write("%s [%d] %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), os.getpid(), msg))
            self.sup_log.flush()
        except OSError:
            pass

    def timer(self, name, delay, fn):
        self.timers[name] = (time.monotonic() + delay, fn)

    def cancel(self, name):
        self.timers.pop(name, None)

    def write_state(self):
        st = {"supervisor_pid": os.getpid(), "kernel_pid": self.proc.pid if self.proc else 0,
              "hostname": self.facts["hostname"],
              "kernel_name": self.p.get("kernel_name"), "tag": self.p.get("tag", ""), "started": self.started}
        st.update(self.state_extra())
        try:
            write_private(os.path.join(self.run_dir, "state.json"), json.dumps(st).encode())
        except OSError as e:
            self.log("cannot write state.json: %s" % e)

    def leases(self):
        return [c for c in self.conns.values() if c.lease]

    def next_due(self):
        """When the next timer or lease ping timeout is due (monotonic), or None."""
        due = [t for t, _ in self.timers.values()]
        due.extend(c.last_seen + c.ping_timeout for c in self.conns.values() if c.lease and c.ping_timeout)
        return min(due) if due else None

    # -- connection file and channels

    def write_connection_file(self):
        ci = self.conn_info
        d = {"ip": ci["ip"], "transport": self.transport, "key": self.key,
             "signature_scheme": self.p.get("signature_scheme") or "hmac-sha256",
             "kernel_name": self.p.get("kernel_name", "")}
        for ch, port in zip(CHANNELS, ci["ports"]):
            d[ch + "_port"] = port
        write_private(self.cf, json.dumps(d, indent=1).encode())

    def choose_ports(self, reuse):
        if self.transport == "ipc":
            self.conn_info = {"ip": os.path.join(self.run_dir, "k"), "ports": [1, 2, 3, 4, 5]}
            return
        if reuse and all(tcp_port_free(p) for p in self.conn_info["ports"]):
            return
        self.conn_info = {"ip": "127.0.0.1", "ports": free_tcp_ports(5)}

    def addrs(self):
        ci = self.conn_info
        if self.transport == "ipc":
            return ["%s-%d" % (ci["ip"], p) for p in ci["ports"]]
        return [(ci["ip"], p) for p in ci["ports"]]

    def channels(self):
        if self.transport == "ipc":
            return dict(zip(CHANNELS, self.addrs()))
        return {ch: "%s:%d" % a for ch, a in zip(CHANNELS, self.addrs())}

    def channels_ready(self):
        fam = socket.AF_UNIX if self.transport == "ipc" else socket.AF_INET
        for a in self.addrs():
            if fam == socket.AF_UNIX and not os.path.exists(a):
                return False
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(0.5)
            try:
                s.connect(a)
            except OSError:
                return False
            finally:
                s.close()
        return True

    def remove_ipc_files(self):
        if self.transport == "ipc":
            for a in self.addrs():
                try:
                    os.unlink(a)
                except OSError:
                    pass

    def status(self):
        d = {"ok": True, "supervisor_pid": os.getpid(),
             "kernel_pid": self.proc.pid if self.proc and self.state in ("starting", "running", "stopping") else 0,
             "state": self.state, "run_dir": self.run_dir, "control": os.path.join(self.run_dir, "ctl"),
             "connection_file": self.cf, "transport": self.transport, "ip": self.conn_info["ip"],
             "ports": self.conn_info["ports"], "channels": self.channels(),
             "interrupt_mode": self.spec["interrupt_mode"], "argv": self.argv,
             "kernel_name": self.p.get("kernel_name", ""), "spec_dir": self.spec.get("resource_dir") or "",
             "persistent": self.persistent, "grace_seconds": self.grace, "leases": len(self.leases()), "streams": len(self.streams),
             "started": self.started, "restarts": self.restarts, "tag": self.p.get("tag", "")}
        d.update(self.facts)
        return d

    # -- kernel process

    def start_kernel(self, on_ready):
        """Start the kernel; on_ready(error_dict_or_None) once its sockets accept or it failed."""
        self.remove_ipc_files()
        self.write_connection_file()
        self.argv = format_argv(self.spec["argv"], self.cf, self.spec.get("resource_dir")) + self.p.get("kernel_args", [])
        extra = self.p.get("env") or {}
        env = kernel_env(self.spec.get("env") or {}, {k: str(v) for k, v in extra.items()})
        env["JPY_PARENT_PID"] = str(os.getpid())  # ipykernel exits when we are gone
        cwd = self.p.get("cwd") or os.path.expanduser("~")
        logfd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=logfd, stderr=logfd, env=env, cwd=cwd,
                start_new_session=True, close_fds=True, preexec_fn=death_signal(),
            )
        except OSError as e:
            self.proc = None
            self.state = "exited"
            on_ready({"ok": False, "code": "kernel_died", "exit_code": None,
                      "error": "cannot start the kernel %s (in %s): %s" % (self.argv[0], cwd, e.strerror or e),
                      "argv": self.argv, "stderr_tail": ""})
            return
        finally:
            os.close(logfd)
        self.state = "starting"
        self.ready_cb = on_ready
        self.log("kernel started: pid %d argv %s" % (self.proc.pid, self.argv))
        self.write_state()
        deadline = time.monotonic() + self.launch_timeout

        def probe():
            if self.state != "starting":
                return
            if self.channels_ready():
                self.state = "running"
                self.log("kernel %d ready" % self.proc.pid)
                self.ready_cb, cb = None, self.ready_cb
                cb(None)
            elif time.monotonic() > deadline:
                self.log("kernel %d not ready after %gs" % (self.proc.pid, self.launch_timeout))
                self.ready_cb, cb = None, self.ready_cb
                err = {"ok": False, "code": "timeout", "argv": self.argv, "stderr_tail": tail(self.log_path),
                       "error": "the kernel did not open its sockets within %gs" % self.launch_timeout}
                self.stop(0, lambda info: cb(err))
            else:
                self.timer("probe", 0.02, probe)

        self.timer("probe", 0.01, probe)

    def reap(self):
        """Called on SIGCHLD: notice the kernel's exit."""
        if self.proc is None or self.proc.returncode is not None:
            return
        if self.proc.poll() is None:
            return
        rc = self.proc.returncode
        info = {"exit_code": rc if rc >= 0 else None, "signal": -rc if rc < 0 else 0,
                "stderr_tail": tail(self.log_path), "kernel_pid": self.proc.pid}
        info.update(self.exit_details())
        self.log("kernel %d exited: %s" % (self.proc.pid, "code %d" % rc if rc >= 0 else "signal %d" % -rc))
        self.kill_leftovers()
        self.cancel("term")
        self.cancel("kill")
        self.cancel("probe")
        prev = self.state
        self.state = "exited"
        self.exit_info = info
        if prev == "starting" and self.ready_cb:
            cb, self.ready_cb = self.ready_cb, None
            desc = "exit code %d" % rc if rc >= 0 else "signal %d" % -rc
            d = dict(info, ok=False, code="kernel_died", argv=self.argv,
                     error="the kernel died while starting (%s)" % self.describe_exit(desc))
            d.pop("kernel_pid", None)
            cb(d)
            return
        if prev == "stopping":
            waiters, self.stop_waiters = self.stop_waiters, []
            for w in waiters:
                w(info)
            return
        # Exited on its own (crash, OOM, kill -9, or a shutdown_request the
        # local side sent before asking us to restart or shut down): tell every
        # lease at once. Linger while a lease is held, so that such a restart
        # or shutdown still finds us; leave when the leases go or after LINGER.
        self.notify(dict(info, event="kernel_exited", reason="died"))
        if self.leases():
            self.timer("linger", LINGER, self.finish)
        else:
            self.finish()

    def exit_details(self):
        return {}

    def state_extra(self):
        return {}

    def describe_exit(self, desc):
        return desc

    def kill_leftovers(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever it left in its group
        except OSError:
            pass

    def signal_kernel(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except OSError:
            try:
                self.proc.send_signal(sig)
            except OSError:
                pass

    def stop(self, wait, then):
        """Let the kernel exit within `wait` seconds, then SIGTERM, then SIGKILL; then(info)."""
        if self.state == "exited" or self.proc is None:
            then(self.exit_info or {})
            return
        self.stop_waiters.append(then)
        if self.state == "stopping":
            return
        self.state = "stopping"
        self.cancel("probe")
        if self.ready_cb:
            cb, self.ready_cb = self.ready_cb, None
            cb({"ok": False, "code": "stopped", "error": "the kernel was stopped while starting"})
        self.log("stopping kernel %d (wait %gs)" % (self.proc.pid, wait))

        def kill():
            self.log("kernel %d ignored SIGTERM: SIGKILL" % self.proc.pid)
            self.signal_kernel(signal.SIGKILL)

        def term():
            self.log("kernel %d still running: SIGTERM" % self.proc.pid)
            self.signal_kernel(signal.SIGTERM)
            self.timer("kill", self.kill_after, kill)

        if wait > 0:
            self.timer("term", wait, term)
        else:
            term()

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
        # eof: the peer closed it (not a ping timeout or a failed send).
        abandoned = eof and c.lease and c.ping_timeout > 0 and time.monotonic() - c.last_seen <= c.ping_timeout / 3 + 1.0
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
            self.answer(c, {"ok": False, "code": "bad_request", "error": "request is not a JSON object"})
            return
        if c.lease:
            return  # pings keep a lease alive; nothing else is read on it
        if op == "status":
            self.answer(c, self.status())
        elif op == "interrupt":
            if self.state != "running":
                self.answer(c, {"ok": False, "code": "not_running", "error": "the kernel is %s" % self.state})
                return
            self.log("interrupt: SIGINT to the kernel")
            self.signal_kernel(signal.SIGINT)
            self.answer(c, {"ok": True})
        elif op == "persist":
            self.persistent = bool(req.get("persistent"))
            self.log("persistent = %s" % self.persistent)
            self.arm_grace()
            self.answer(c, self.status())
        elif op == "stream":
            self.open_stream(c, req)
        elif op == "lease":
            c.lease = True
            pt = req.get("ping_timeout")
            c.ping_timeout = float(pt) if isinstance(pt, (int, float)) and pt > 0 else 0.0
            self.cancel("grace")
            self.log("lease opened (%d now)" % len(self.leases()))
            self.answer(c, self.status(), close=False)
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
            s = Stream(self, "%s-%d" % (channel, self.stream_seq), channel, ks)
            self.streams[s.id] = s
        fd = c.sock.fileno()
        self.conns.pop(fd, None)
        self.sel.unregister(c.sock)
        early, c.buf = c.buf, b""
        s.attach(c.sock, recv, early)

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

    # -- main loop

    def on_signal(self):
        try:
            data = os.read(self.wake_r, 512)
        except OSError:
            return
        for b in bytearray(data):
            if b == signal.SIGCHLD:
                self.reap()
            elif b == signal.SIGTERM and self.state not in ("stopping", "exited"):
                self.log("SIGTERM: shutting down")
                self.stop(0, self.shut)

    def shut(self, info):
        self.notify(dict(info, event="kernel_exited", reason="shutdown"))
        self.finish()

    def finish(self):
        """Exit once the kernel is gone: the loop ends, then cleanup() runs."""
        self.want_exit = True

    def done(self):
        return self.want_exit and self.state in ("new", "exited")

    def cleanup(self):
        if self.proc and self.proc.poll() is None:  # never leave a kernel behind
            self.log("kernel %d still running at exit: SIGKILL" % self.proc.pid)
            self.signal_kernel(signal.SIGKILL)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for s in list(self.streams.values()):
            s.close()
        for c in list(self.conns.values()):
            try:
                c.sock.close()
            except OSError:
                pass
        self.conns.clear()
        try:
            self.listener.close()
        except OSError:
            pass
        self.log("supervisor exits; removing %s" % self.run_dir)
        rmtree(self.run_dir)

    def run(self, on_ready):
        """Start the kernel and serve until it is gone. on_ready is called once."""
        tune_malloc()
        self.wake_r, wake_w = os.pipe()
        for fd in (self.wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda s, f: None)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "signal")
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.choose_ports(reuse=False)

        def ready(err):
            on_ready(err)
            if err:
                self.finish()
            else:
                self.arm_grace()

        self.start_kernel(ready)
        while not self.done():
            due = self.next_due()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            busy = False  # something other than stream data happened
            for key, mask in self.sel.select(timeout):
                if isinstance(key.data, Endpoint):
                    key.data.fn(mask)
                    continue
                busy = True
                if key.data == "signal":
                    self.on_signal()
                elif key.data == "accept":
                    self.accept()
                elif isinstance(key.data, Conn):
                    if key.data.sock.fileno() in self.conns:
                        self.readable(key.data)
                else:
                    key.data()  # an extra fd with its callback (the launch's abort pipe)
            now = time.monotonic()
            # Stream data, the bulk of all events, changes nothing below: skip
            # the bookkeeping (a waitpid, the timers) unless something else
            # happened or is due. Bulk output costs the relay less CPU.
            if not busy and (due is None or now < due):
                continue
            self.reap()  # a SIGCHLD may have raced the wakeup byte
            for name, (when, fn) in sorted(self.timers.items(), key=lambda kv: kv[1][0]):
                if when <= now and self.timers.get(name, (None,))[0] == when:
                    del self.timers[name]
                    fn()
            for c in self.leases():
                if c.ping_timeout and now - c.last_seen > c.ping_timeout:
                    self.log("lease silent for %gs: dropped" % c.ping_timeout)
                    self.drop(c)
        self.cleanup()


def send_all(sock, data, timeout=2.0):
    """Send on a non-blocking socket, giving up after timeout (a client that stopped reading)."""
    deadline = time.monotonic() + timeout
    while data:
        try:
            n = sock.send(data)
            data = data[n:]
        except (BlockingIOError, InterruptedError):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select_write(sock, left)
        except OSError:
            return False
    return True


def select_write(sock, timeout):
    import select

    select.select([], [sock], [], timeout)


def death_signal():
    """On Linux, make the kernel get SIGTERM if the supervisor dies (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (ImportError, OSError, AttributeError):
        return None
    parent = os.getpid()

    def pre():
        prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return pre


# ---------------------------------------------------------------- slurm

# The kernel runs as a Slurm batch job on a compute node; the supervisor stays
# on the login node and reaches the kernel over tcp. The connection file lives
# in the run dir on the (shared) home; the job's first step puts the address
# the login node can reach into it, and the kernel (ports 0) writes the ports
# it bound back into it.

DEFAULT_QUEUE = 600.0
SLURM_CMDS = ("sbatch", "squeue", "scancel", "scontrol")
SLURM_TIMEOUT = 30.0  # seconds any one Slurm command may take
JOB_PROBE = 1.0  # seconds between checks that a running kernel still listens
JOB_QUERY = 30.0  # seconds between Slurm queries about a running job
PENDING_REPORT = 30.0  # seconds between repeated "still pending" reports

# Runs first inside the job: the address that reaches the submit host is the
# one the login node can reach us at (a hostname may resolve to 127.0.1.1).
JOB_PREP = r"""
import json, os, socket, sys
cf = sys.argv[1]
ip = os.environ.get("GOPYK_KERNEL_IP", "")
if not ip:
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((os.environ.get("SLURM_SUBMIT_HOST") or socket.gethostname(), 9))
        ip = s.getsockname()[0]
        s.close()
    except OSError:
        ip = socket.gethostbyname(socket.gethostname())
with open(cf) as f:
    d = json.load(f)
d["ip"] = ip
t = cf + ".job"
fd = os.open(t, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, json.dumps(d).encode())
os.close(fd)
os.rename(t, cf)
sys.stdout.flush()
os.execvp(sys.argv[2], sys.argv[2:])
"""


def slurm_args(params):
    import shlex

    a = params.get("launcher_args") or ""
    if not isinstance(a, str):
        raise Fail("bad_params", "launcher_args must be a string")
    try:
        return shlex.split(a)
    except ValueError as e:
        raise Fail("bad_params", "launcher args %r: %s" % (a, e))


def slurm_run(argv, env=None, cwd=None):
    """Run a Slurm command: (returncode, stdout, stderr). A missing command is a Fail."""
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, cwd=cwd, timeout=SLURM_TIMEOUT, universal_newlines=True)
    except FileNotFoundError:
        raise Fail("slurm", "%s not found on the PATH of %s: launcher slurm needs the Slurm commands on the "
                   "login node (load them with --remote-pre, e.g. 'module load slurm')"
                   % (argv[0], socket.gethostname()))
    except subprocess.TimeoutExpired:
        return 124, "", "%s did not answer within %gs" % (argv[0], SLURM_TIMEOUT)
    except OSError as e:
        raise Fail("slurm", "cannot run %s: %s" % (argv[0], e))
    return p.returncode, p.stdout, p.stderr


def job_info(job_id):
    """scontrol's view of a job: dict (JobState, Reason, NodeList, ExitCode…), {} when Slurm
    no longer knows it, None when Slurm could not be asked."""
    import re

    try:
        rc, out, err = slurm_run(["scontrol", "-o", "show", "job", str(job_id)])
    except Fail:
        return None
    if rc != 0:
        return {} if "Invalid job id" in err else None
    d = dict(re.findall(r"(?:^|\s)(\w+)=(\S*)", out))
    m = re.search(r"\sReason=(.*?) Dependency=", out)
    if m:
        d["Reason"] = m.group(1)
    return d


# Job states in which the kernel process is gone for good.
JOB_ENDED = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
             "DEADLINE", "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT")


class SlurmJob(object):
    """The kernel as a Slurm job, with what Supervisor uses of a Popen."""

    def __init__(self, job_id):
        self.job_id = job_id
        self.pid = 0
        self.returncode = None
        self.ended = None  # the exit status once Slurm reports the job over
        self.info = {}

    def poll(self):
        if self.returncode is None and self.ended is not None:
            self.returncode = self.ended
        return self.returncode

    def end(self, info):
        self.info = info or self.info
        code = (self.info.get("ExitCode") or "0:0").split(":")
        try:
            rc, sig = int(code[0]), int(code[1]) if len(code) > 1 else 0
        except ValueError:
            rc, sig = 1, 0
        if sig:
            rc = -sig
        elif rc == 0 and self.info.get("JobState", "COMPLETED") != "COMPLETED":
            rc = 1  # Slurm ended it (time limit, node failure) without a code
        self.ended = rc

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.ended is None and time.monotonic() < deadline:
            info = job_info(self.job_id)
            if info == {} or (info and info.get("JobState") in JOB_ENDED):
                self.end(info)
                break
            time.sleep(0.2)
        return self.poll()


class SlurmSupervisor(Supervisor):
    def __init__(self, params, spec, run_dir, listener, facts):
        Supervisor.__init__(self, params, spec, run_dir, listener, facts)
        self.transport = "tcp"
        self.queue_timeout = num(params, "queue_timeout", DEFAULT_QUEUE)
        self.sargs = slurm_args(params)
        self.name = params.get("tag") or params.get("kernel_name") or "kernel"

    def choose_ports(self, reuse):
        self.conn_info = {"ip": "", "ports": [0, 0, 0, 0, 0]}

    def channels(self):
        if not self.conn_info["ip"]:
            return dict((ch, "") for ch in CHANNELS)
        return Supervisor.channels(self)

    def status(self):
        d = Supervisor.status(self)
        job = self.proc if isinstance(self.proc, SlurmJob) else None
        d.update(launcher="slurm", job_id=job.job_id if job else "",
                 job_state=job.info.get("JobState", "") if job else "",
                 job_reason=job.info.get("Reason", "") if job else "",
                 node=job.info.get("BatchHost") or job.info.get("NodeList", "") if job else "")
        return d

    def start_kernel(self, on_ready):
        self.choose_ports(False)
        try:
            os.unlink(self.cf)
        except OSError:
            pass
        self.write_connection_file()
        self.argv = format_argv(self.spec["argv"], self.cf, self.spec.get("resource_dir")) + self.p.get("kernel_args", [])
        extra = self.p.get("env") or {}
        env = kernel_env(self.spec.get("env") or {}, {k: str(v) for k, v in extra.items()})
        env.pop("JPY_PARENT_PID", None)  # the supervisor is on another node
        cwd = self.p.get("cwd") or os.path.expanduser("~")
        script = os.path.join(self.run_dir, "job.sh")
        import shlex

        body = "#!/bin/sh\n# gopyk kernel %s\nexec %s\n" % (self.name, " ".join(
            shlex.quote(a) for a in [sys.executable, "-c", JOB_PREP, self.cf] + self.argv))
        write_private(script, body.encode())
        # slurmd appends to an existing output file and keeps its mode; one it
        # creates itself would be readable by others.
        os.close(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        cmd = ["sbatch", "--parsable", "--job-name=gopyk-" + self.name, "--output=" + self.log_path,
               "--open-mode=append", "--chdir=" + cwd] + self.sargs + [script]
        self.log("sbatch: %s" % " ".join(shlex.quote(a) for a in cmd))
        try:
            rc, out, err = slurm_run(cmd, env=env, cwd=cwd)
            job_id = out.strip().split(";")[0]
            if rc != 0 or not job_id.isdigit():
                raise Fail("slurm", "kernel spec %r: sbatch refused the job: %s" % (
                    self.name, oneline(err or out or "exit code %d" % rc)), argv=cmd)
        except Fail as e:
            self.proc = None
            self.state = "exited"
            self.log(str(e))
            on_ready(e.reply())
            return
        self.proc = SlurmJob(job_id)
        self.state = "starting"
        self.ready_cb = on_ready
        self.log("kernel submitted as Slurm job %s" % job_id)
        self.write_state()
        self.submitted = time.monotonic()
        self.running_since = None
        self.last_query = 0.0
        self.last_report = ("", "", 0.0)
        self.progress("Slurm job %s submitted" % job_id)
        self.timer("job", 0.05, self.watch)

    def state_extra(self):
        # list_kernels cancels the job of a supervisor that died (kill -9, a reboot of the login node).
        return {"job_id": self.proc.job_id} if isinstance(self.proc, SlurmJob) else {}

    def exit_details(self):
        job = self.proc
        if not isinstance(job, SlurmJob):
            return {}
        return {"job_id": job.job_id, "job_state": job.info.get("JobState", ""), "job_reason": job.info.get("Reason", "")}

    def describe_exit(self, desc):
        job = self.proc
        return "Slurm job %s %s, %s" % (job.job_id, job.info.get("JobState") or "ended", desc)

    def kill_leftovers(self):
        pass  # Slurm ends the job's processes

    def signal_kernel(self, sig):
        job = self.proc
        if not isinstance(job, SlurmJob) or job.ended is not None:
            return
        if sig == signal.SIGINT:
            cmd = ["scancel", "--signal=INT", "--batch", job.job_id]
        else:  # Slurm's own TERM, wait, KILL
            cmd = ["scancel", job.job_id]
        try:
            rc, out, err = slurm_run(cmd)
        except Fail as e:
            rc, err = 1, str(e)
        if rc != 0:
            self.log("%s failed: %s" % (" ".join(cmd), oneline(err)))
        if sig != signal.SIGINT:
            self.last_query = 0.0
            self.timer("job", 0.1, self.watch)

    def read_ports(self):
        try:
            with open(self.cf) as f:
                d = json.load(f)
            ports = [int(d[ch + "_port"]) for ch in CHANNELS]
            ip = d.get("ip") or ""
        except (OSError, ValueError, KeyError, TypeError):
            return False  # not yet, or being rewritten
        if ip and all(ports):
            self.conn_info = {"ip": ip, "ports": ports}
            return True
        return False

    def hb_listens(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.connect((self.conn_info["ip"], self.conn_info["ports"][4]))
            return True
        except OSError:
            return False
        finally:
            s.close()

    def fail_start(self, err):
        self.ready_cb, cb = None, self.ready_cb
        self.stop(0, lambda info: cb(err))

    def watch(self):
        """Follow the job: pending → running → kernel listening; then check now and then that it lives."""
        job = self.proc
        if not isinstance(job, SlurmJob) or job.ended is not None or self.state == "exited":
            return
        now = time.monotonic()
        if self.state == "running" and now - self.last_query < JOB_QUERY and self.hb_listens():
            self.timer("job", JOB_PROBE, self.watch)
            return
        if self.state == "starting" and self.running_since is not None and now - self.last_query < 1.0:
            info = job.info  # between queries, only look for the kernel's ports
        else:
            info = job_info(job.job_id)
            self.last_query = now
        if info is None:
            self.log("cannot ask Slurm about job %s; will retry" % job.job_id)
            self.timer("job", 2.0, self.watch)
            return
        st = info.get("JobState", "")
        if info == {} or st in JOB_ENDED:
            job.end(info)
            self.log("Slurm job %s %s (%s)" % (job.job_id, st or "gone", info.get("Reason", "")))
            return  # reap() takes it from here
        job.info = info
        if self.state == "starting":
            self.watch_start(job, st, info.get("Reason", ""), now)
        delay = {"starting": 0.05 if self.running_since else 0.5, "running": JOB_PROBE}.get(self.state, 0.2)
        if self.state in ("starting", "running", "stopping") and "job" not in self.timers:
            self.timer("job", delay, self.watch)

    def watch_start(self, job, st, reason, now):
        if st == "RUNNING":
            if self.running_since is None:
                self.running_since = now
                node = job.info.get("BatchHost") or job.info.get("NodeList", "")
                self.progress("Slurm job %s running on %s" % (job.job_id, node))
                self.log("Slurm job %s running on %s" % (job.job_id, node))
            if self.read_ports() and self.channels_ready():
                self.state = "running"
                self.log("kernel of job %s ready at %s" % (job.job_id, self.conn_info["ip"]))
                self.ready_cb, cb = None, self.ready_cb
                cb(None)
            elif now - self.running_since > self.launch_timeout:
                self.log("kernel of job %s not ready after %gs" % (job.job_id, self.launch_timeout))
                self.fail_start({"ok": False, "code": "timeout", "argv": self.argv, "stderr_tail": tail(self.log_path),
                                 "error": "the kernel of Slurm job %s did not open its sockets within %gs"
                                 % (job.job_id, self.launch_timeout)})
            return
        last_st, last_reason, last_at = self.last_report
        if (st, reason) != (last_st, last_reason) or now - last_at >= PENDING_REPORT:
            self.last_report = (st, reason, now)
            self.progress("Slurm job %s %s (reason: %s), waited %ds of the %gs queue timeout"
                          % (job.job_id, st.lower(), reason, now - self.submitted, self.queue_timeout))
        if now - self.submitted > self.queue_timeout:
            self.log("Slurm job %s still %s (%s) after %gs: cancelling" % (job.job_id, st, reason, self.queue_timeout))
            self.fail_start({"ok": False, "code": "queue_timeout", "job_id": job.job_id, "job_state": st,
                             "job_reason": reason,
                             "error": "kernel spec %r: Slurm job %s still %s after the %gs queue timeout "
                             "(reason: %s); cancelled it (raise it with --queue-timeout or change --launcher-args)"
                             % (self.name, job.job_id, st.lower(), self.queue_timeout, reason)})


def orphan_job(job_id):
    """Cancel the Slurm job of a dead supervisor; a description if there was one to cancel."""
    info = job_info(job_id)
    if not info or info.get("JobState") in JOB_ENDED:
        return ""
    try:
        slurm_run(["scancel", job_id])
    except Fail:
        return ""
    return "Slurm job %s (its supervisor had died)" % job_id


def oneline(s):
    return " | ".join(l.strip() for l in (s or "").strip().splitlines() if l.strip())


def slurm_inspect():
    """Where the Slurm commands are on this login node, and Slurm's version."""
    import shutil

    found = dict((c, shutil.which(c) or "") for c in SLURM_CMDS)
    res = {"slurm_commands": found, "slurm_missing": [c for c in SLURM_CMDS if not found[c]]}
    if found["sbatch"]:
        try:
            rc, out, err = slurm_run(["sbatch", "--version"])
            if rc == 0:
                res["slurm_version"] = out.strip()
            else:  # sbatch cannot find its configuration (SLURM_CONF) or is broken
                res["slurm_error"] = "sbatch --version failed: " + oneline(err or out)
        except Fail as e:
            res["slurm_version"] = ""
            res["slurm_error"] = str(e)
    return res


# ---------------------------------------------------------------- launch


def launch(params, stdin):
    for field in ("kernel_name", "key"):
        if not isinstance(params.get(field), str) or not params[field]:
            raise Fail("bad_params", "launch needs %s" % field)
    transport = params.get("transport") or "ipc"
    if transport not in ("ipc", "tcp"):
        raise Fail("bad_params", "transport must be ipc or tcp, not %r" % transport)
    env = params.get("env") or {}
    if not isinstance(env, dict):
        raise Fail("bad_params", "env must be an object")
    kargs = params.get("kernel_args") or []
    if not isinstance(kargs, list) or not all(isinstance(a, str) for a in kargs):
        raise Fail("bad_params", "kernel_args must be a list of strings")
    params["kernel_args"] = kargs
    launcher = params.get("launcher") or "local"
    if launcher not in ("local", "slurm"):
        raise Fail("bad_params", "launcher must be local or slurm, not %r" % (launcher,))
    if launcher == "slurm":
        slurm_args(params)  # a bad --launcher-args fails here, before anything starts
    spec = find_spec(params["kernel_name"])
    facts = host_facts()
    run_dir, listener = new_run_dir()
    try:
        cls = SlurmSupervisor if launcher == "slurm" else Supervisor
        sup = cls(params, spec, run_dir, listener, facts)
    except BaseException:
        rmtree(run_dir)
        raise
    wait = sup.launch_timeout + getattr(sup, "queue_timeout", 0.0) + 5.0
    ready_r, ready_w = os.pipe()
    abort_r, abort_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        # First child: new session, fork the supervisor, exit so it is reparented.
        try:
            os.setsid()
            if os.fork() == 0:
                os.close(ready_r)
                os.close(abort_w)
                supervise(sup, ready_w, abort_r)
                os._exit(0)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(abort_r)
    listener.close()
    os.waitpid(pid, 0)
    return await_supervisor(ready_r, stdin, wait, run_dir)


def await_supervisor(ready_r, stdin, wait, run_dir):
    """Relay the supervisor's one result; give up if the local side hangs up first."""
    import select

    deadline = time.monotonic() + wait
    buf = b""
    watch = [ready_r]
    try:
        stdin_fd = stdin.fileno()
        watch.append(stdin_fd)
    except (AttributeError, ValueError, OSError):
        stdin_fd = -1
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Fail("timeout", "the supervisor did not report within %gs" % wait, run_dir=run_dir)
        r, _, _ = select.select(watch, [], [], left)
        if stdin_fd in r:
            try:
                more = os.read(stdin_fd, 4096)
            except OSError:
                more = b""
            if not more:
                # The local side gave up (launch timeout): closing abort_w (at exit) tells
                # the supervisor to stop the kernel and clean up.
                os._exit(3)
        if ready_r in r:
            chunk = os.read(ready_r, 65536)
            if not chunk:
                break
            buf += chunk
            while buf.startswith(b"P") and b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg = json.loads(line[1:].decode()).get("message", "")
                except (ValueError, AttributeError):
                    continue
                try:
                    write_all(1, frame({"op": "progress", "message": msg}))
                except OSError:
                    pass
    try:
        return json.loads(buf.decode())
    except ValueError:
        rmtree(run_dir)  # nobody else will: the supervisor is gone
        raise Fail("internal", "the supervisor died while starting the kernel")


def supervise(sup, ready_w, abort_r):
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)
    told = [False]

    def tell(res):
        """Send the one launch result to the launcher and stop watching it."""
        if told[0]:
            return
        told[0] = True
        try:
            write_all(ready_w, json.dumps(res).encode())
        except OSError:
            pass
        os.close(ready_w)
        sup.sel.unregister(abort_r)
        os.close(abort_r)

    def on_ready(err):
        tell(err or sup.status())

    def progress(msg):
        # A line the launcher relays to the local side at once (a job waiting in a queue).
        if not told[0]:
            try:
                write_all(ready_w, b"P" + json.dumps({"message": msg}).encode() + b"\n")
            except OSError:
                pass

    sup.progress = progress

    def aborted():
        # The launcher exited before we reported: the local side gave up on this launch.
        sup.log("launch abandoned by the local side: stopping the kernel")
        tell({})
        sup.stop(0, lambda info: sup.finish())

    sup.sel.register(abort_r, selectors.EVENT_READ, aborted)
    sup.log("supervisor started for kernel spec %r in %s" % (sup.p.get("kernel_name"), sup.run_dir))
    try:
        sup.run(on_ready)
    except BaseException as e:  # never leave a kernel or a run dir behind
        import traceback

        sup.log("supervisor crashed: %s" % traceback.format_exc())
        tell({"ok": False, "code": "internal", "error": "supervisor crashed: %s" % e})
        if sup.proc and sup.proc.poll() is None:
            sup.signal_kernel(signal.SIGKILL)
        rmtree(sup.run_dir)


# ---------------------------------------------------------------- inspect


def inspect(params):
    """What `gopyk list` shows: host, python, jupyter_client and the kernel spec."""
    res = {"ok": True}
    res.update(host_facts())
    try:
        import jupyter_client  # a real import: "importable" is the question

        res["jupyter_client"] = str(getattr(jupyter_client, "__version__", "unknown version"))
    except Exception:
        res["jupyter_client"] = ""
    if params.get("launcher") == "slurm":
        res.update(slurm_inspect())
    name = params.get("kernel_name") or "python3"
    if isinstance(name, str):
        try:
            spec = find_spec(name)
        except Fail as e:
            res["kernel_error"] = str(e)
            res["kernel_names"] = e.extra.get("kernel_names", [])
            return res
        argv = list(spec["argv"])
        if argv[0] in ("python", "python%d" % sys.version_info[0], "python%d.%d" % sys.version_info[:2]):
            argv[0] = sys.executable
        rd = spec.get("resource_dir") or ""
        res.update(kernel_name=os.path.basename(rd) if os.path.isfile(os.path.join(rd, "kernel.json")) else name.lower(),
                   spec_dir=rd, interrupt_mode=spec["interrupt_mode"], argv=argv)
    return res


# ---------------------------------------------------------------- mux (one session carries every stream)
#
# For servers that refuse SSH forwarding: the mux action's stdin/stdout carry
# many streams to unix sockets on this host (the supervisor's control socket),
# framed as in mux/doc.go: type byte, 4-byte stream id, 4-byte length,
# payload. Each stream has a credit window each way, so one stream nobody
# drains cannot hold the others back by more than MUX_WINDOW bytes.

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


# ---------------------------------------------------------------- entry


def main(params_line, stdin):
    try:
        try:
            params = json.loads(params_line.decode())
            if not isinstance(params, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError) as e:
            raise Fail("bad_params", "launch parameters are not a JSON object: %s" % e)
        action = params.get("action")
        if action == "launch":
            res = launch(params, stdin)
        elif action in ("status", "attach"):
            rd = params.get("run_dir")
            if not isinstance(rd, str) or not rd:
                raise Fail("bad_params", "%s needs run_dir" % action)
            res = control_call(rd, {"op": "status"})
        elif action == "control":
            rd, req = params.get("run_dir"), params.get("request")
            if not isinstance(rd, str) or not isinstance(req, dict):
                raise Fail("bad_params", "control needs run_dir and request")
            res = control_call(rd, req, timeout=num(params, "timeout", 30.0))
        elif action == "list":
            res = list_kernels()
        elif action == "inspect":
            res = inspect(params)
        elif action == "mux":
            mux(params)
        elif action == "forward_probe":
            forward_probe(params)
        else:
            raise Fail("bad_params", "unknown action %r" % (action,))
        if CACHE_WARNING:
            res["cache_warning"] = CACHE_WARNING
        reply(res)
    except Fail as e:
        reply(e.reply())
    except Exception as e:  # a bug: still one clear framed reply
        reply({"ok": False, "code": "internal", "error": "%s: %s" % (type(e).__name__, e)})
    sys.stdout.flush()
    os._exit(0)


CACHE_WARNING = globals().get("CACHE_WARNING", "")
if __name__ == "__gopyk__":
    main(PARAMS, STDIN)  # noqa: F821 (set by the bootstrap)
