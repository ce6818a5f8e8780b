# gopyk remote launcher: common — small helpers every other module may use.
#
# Owns: Fail (an error reply: machine-readable code, one-line message), the
# channel names, private files and dirs (0600/0700, written atomically), log
# tails, pid checks, non-blocking sends, buffer trimming.
# May not: write to stdout (proto.py frames it), import another module of the
# package (everything imports this), see the kernel's key.

import errno
import os
import stat
import time


CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
TAIL_LINES = 20
TAIL_BYTES = 4096


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


def write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


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


def num(params, name, default):
    v = params.get(name)
    if v is None:
        return default
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise Fail("bad_params", "%s must be a number of seconds" % name)
    return float(v)


def rmtree(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def oneline(s):
    return " | ".join(l.strip() for l in (s or "").strip().splitlines() if l.strip())


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
