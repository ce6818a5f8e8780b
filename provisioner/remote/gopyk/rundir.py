# gopyk remote launcher: rundir — where a kernel's private run dir and sockets go.
#
# Owns: the run dir bases (~/.gopyk/run, or /tmp/gopyk-<uid> when unix socket
# paths would be too long), making a run dir and binding its control socket
# (ctl, 0600), free tcp ports for transport tcp.
# May not: write into a run dir beyond the socket (the supervisor owns its
# files), see the key, write to stdout.

import os
import socket

from .common import Fail, private_dir, rmtree


SOCK_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS/BSD


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
