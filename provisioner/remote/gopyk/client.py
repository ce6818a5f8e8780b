# gopyk remote launcher: client — the actions that reach existing supervisors.
#
# Owns: control_call (one request line on a run dir's control socket, one
# answer; used by the status, attach and control actions) and the list action:
# every supervisor of this user, removal of stale run dirs, cancelling the
# Slurm job of a supervisor that died, and old_launchers (cached launchers of
# other gopyk versions); clean_stale, the same removal run (detached,
# rate-limited) after each launch.
# May not: write to stdout (main.py replies), see the key (requests carry none).

import errno
import json
import os
import socket
import stat
import sys
import time

from .common import Fail, pid_alive, rmtree
from .rundir import is_run_id, run_bases
from .slurm import orphan_job


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
        gone = Fail("gone", "the supervisor at %s closed the connection without answering" % run_dir)
        buf = b""
        try:
            s.sendall((json.dumps(request) + "\n").encode())
            while b"\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise gone
                buf += chunk
        except socket.timeout:
            raise Fail("control", "the supervisor at %s did not answer within %gs" % (run_dir, timeout))
        except (ConnectionResetError, BrokenPipeError):
            raise gone  # it was exiting: it closed our connection unread
        except OSError as e:
            raise Fail("control", "cannot talk to the supervisor at %s: %s" % (path, e))
        return json.loads(buf.split(b"\n", 1)[0].decode())
    finally:
        s.close()


def list_kernels():
    """Every supervisor of this user; stale run dirs (supervisor dead) are removed."""
    kernels, removed = [], []
    here = socket.gethostname()
    for base in run_bases():
        try:
            names = sorted(n for n in os.listdir(base) if is_run_id(n))
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
            entry = judge_dead(d, here, removed)
            if entry:
                kernels.append(entry)
    removed.extend(old_launchers())
    return {"ok": True, "kernels": kernels, "removed": removed}


def judge_dead(d, here, removed):
    """Run dir d has no supervisor answering: remove it (cancelling a Slurm
    job it left) once it is clearly not a launch in progress. Returns what
    to list instead when it must stay."""
    try:
        with open(os.path.join(d, "state.json")) as f:
            st = json.load(f)
        if st.get("hostname", here) != here:
            # A home shared by several login nodes: not ours to judge.
            return {"ok": False, "code": "elsewhere", "run_dir": d, "hostname": st["hostname"],
                    "error": "this kernel runs on %s" % st["hostname"]}
        spid = int(st.get("supervisor_pid", 0))
        if pid_alive(spid):
            return None
        if st.get("job_id"):
            job = orphan_job(str(st["job_id"]))
            if job:
                removed.append(job)
        kpid = int(st.get("kernel_pid", 0))
        if kpid > 0 and pid_alive(kpid):
            return {"ok": False, "code": "orphan", "run_dir": d, "kernel_pid": kpid,
                    "error": "kernel %d is running without its supervisor" % kpid}
    except (OSError, ValueError, TypeError, AttributeError):
        try:
            if time.time() - os.lstat(d).st_mtime < 120:
                return None  # a launch in progress, before its state.json
        except OSError:
            return None
    rmtree(d)
    removed.append(d)
    return None


def supervisor_answers(d):
    """Something accepts on d's control socket (a live supervisor), without
    waiting for it to answer a request."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(os.path.join(d, "ctl"))
        return True
    except socket.timeout:
        return True  # a full backlog: alive, but busy
    except OSError:
        return False
    finally:
        s.close()


CLEAN_EVERY = 10.0  # seconds between two clean-ups of stale run dirs at launch, per base


def clean_stale():
    """Remove the run dirs of supervisors that died without cleaning up
    (kill -9, a reboot), and cancel the Slurm jobs they left. One at a time
    (a lock), at most every CLEAN_EVERY seconds per base: a burst of
    launches does not scan in a burst."""
    import fcntl

    here = socket.gethostname()
    removed = []
    for base in run_bases():
        try:
            fd = os.open(os.path.join(base, ".clean"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            st = os.fstat(fd)
            if st.st_size and time.time() - st.st_mtime < CLEAN_EVERY:
                continue
            if not st.st_size:
                os.write(fd, b"x")
            os.utime(fd)
            for name in os.listdir(base):
                d = os.path.join(base, name)
                if is_run_id(name) and not supervisor_answers(d):
                    judge_dead(d, here, removed)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def clean_stale_detached():
    """clean_stale in a detached process, so that the launch does not wait
    for it and the end of the exec session does not cut it short."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.closerange(3, 1024)
                try:
                    clean_stale()
                finally:
                    os._exit(0)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def old_launchers(days=30):
    """Remove cached launchers of other gopyk versions not uploaded for `days`
    (one still in use elsewhere is simply uploaded again; a supervisor that
    runs one imported all its modules at start), and extraction leftovers:
    ~/.gopyk/launcher-<hash> (a dir), launcher-<hash>.<pid>.tmp[old] and,
    from gopyk versions of one file, launcher-<hash>.py and its bytecode."""
    me = os.path.realpath(os.path.dirname(os.path.dirname(globals().get("__file__") or "/")))
    mine = os.path.basename(me)
    if not (mine.startswith("launcher-") and len(mine) == 25):
        return []  # running from memory (the home cannot cache it)
    d = os.path.dirname(me)
    gone = []
    now = time.time()
    for sub in ("", "__pycache__"):
        try:
            names = os.listdir(os.path.join(d, sub))
        except OSError:
            continue
        for n in names:
            p = os.path.join(d, sub, n)
            if not n.startswith("launcher-"):
                continue
            if n.split(".")[0] == mine:
                # Ours: only an extraction that never finished (its python was killed).
                if not n.endswith((".tmp", ".tmpold")) or sub:
                    continue
                age = 3600
            else:
                age = days * 86400
            try:
                st = os.lstat(p)
                if now - st.st_mtime <= age:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    rmtree(p)
                else:
                    os.unlink(p)
                gone.append(p)
            except OSError:
                pass
    return gone
