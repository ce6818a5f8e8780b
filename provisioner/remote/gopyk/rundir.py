# gopyk remote launcher: rundir — where a kernel's private run dir and sockets go.
#
# Owns: the run dir bases (~/.gopyk/run, or /tmp/gopyk-<uid> when unix socket
# paths would be too long or the home is full or read-only), making a run dir
# and binding its control socket (ctl, 0600), what to say about a file system
# that is full, free tcp ports for transport tcp.
# May not: write into a run dir beyond the socket (the supervisor owns its
# files), see the key, write to stdout.

import errno
import os
import socket

from .common import Fail, private_dir, rmtree, write_all


SOCK_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS/BSD


def run_bases():
    return [
        os.path.join(os.path.expanduser("~"), ".gopyk", "run"),
        "/tmp/gopyk-%d" % os.getuid(),
    ]


def fits(run_dir):
    return len((run_dir + "/ctl").encode()) <= SOCK_MAX and len((run_dir + "/k-5").encode()) <= SOCK_MAX


NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
HOME_FULL = [False]  # new_run_dir found no room in the home (the kernel will not either)


def mount_point(path):
    """The mount point of the file system holding path (or its nearest existing parent)."""
    path = os.path.realpath(path)
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    try:
        dev = os.stat(path).st_dev
        while path != "/" and os.stat(os.path.dirname(path)).st_dev == dev:
            path = os.path.dirname(path)
    except OSError:
        pass
    return path


def size_text(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1024.0


def no_room(path, e):
    """What to tell about a write to path that failed with e (an errno of NO_ROOM)."""
    mp = mount_point(path)
    if e.errno == errno.EROFS:
        return "%s: the file system mounted at %s is read-only" % (path, mp)
    try:
        st = os.statvfs(mp)
        free = " (%s free of %s)" % (size_text(st.f_bavail * st.f_frsize), size_text(st.f_blocks * st.f_frsize))
    except OSError:
        free = ""
    if e.errno == errno.EDQUOT:
        return "%s: your disk quota on %s is used up%s; delete files of yours there or ask for more quota" % (path, mp, free)
    return "%s: the file system mounted at %s is full%s; free space there" % (path, mp, free)


def probe_write(path):
    """Write and remove a page in dir path: a full file system still lets
    mkdir and bind through (tmpfs), and fails only on the first write."""
    p = os.path.join(path, ".probe")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_all(fd, b"\0" * 4096)
    finally:
        try:
            os.close(fd)  # NFS reports a full server here
        finally:
            os.unlink(p)


def new_run_dir():
    """Make a private run dir and bind its control socket there. Falls back to
    /tmp when the home's paths are too long for unix sockets, its file system
    cannot hold sockets (AFS, some FUSE mounts), or it is full or read-only."""
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
        except OSError as e:
            if e.errno in NO_ROOM:
                HOME_FULL[0] = HOME_FULL[0] or base == run_bases()[0]
                errors.append(no_room(base, e))
            else:
                errors.append("%s: %s" % (base, e))
            continue
        except Fail as e:
            errors.append("%s: %s" % (base, e))
            continue
        try:
            probe_write(path)
        except OSError as e:
            rmtree(path)
            if e.errno in NO_ROOM:
                HOME_FULL[0] = HOME_FULL[0] or base == run_bases()[0]
                errors.append(no_room(base, e))
            else:
                errors.append("%s: cannot write there: %s" % (base, e))
            continue
        try:
            return path, control_listener(path)
        except OSError as e:
            rmtree(path)
            errors.append("%s: cannot create a unix socket there: %s" % (base, e))
    code = "no_room" if errors and all(" is full" in e or "quota" in e or "read-only" in e for e in errors) else "run_dir"
    raise Fail(code, "cannot create a run directory: " + "; ".join(errors))


def is_run_id(name):
    """Run dirs are named by 8 hex digits; anything else in a base is not one."""
    return len(name) == 8 and all(c in "0123456789abcdef" for c in name)


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
        # The lease, each client's streams and the local readiness check
        # may all arrive while the supervisor is still being forked.
        listener.listen(128)
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
