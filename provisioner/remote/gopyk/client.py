# gopyk remote launcher: client — the actions that reach existing supervisors.
#
# Owns: control_call (one request line on a run dir's control socket, one
# answer; used by the status, attach and control actions) and the list action:
# every supervisor of this user, removal of stale run dirs, cancelling the
# Slurm job of a supervisor that died, and old_launchers (cached launchers of
# other gopyk versions).
# May not: write to stdout (main.py replies), see the key (requests carry none).

import errno
import json
import os
import socket
import stat
import time

from .common import Fail, pid_alive, rmtree
from .rundir import run_bases
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
