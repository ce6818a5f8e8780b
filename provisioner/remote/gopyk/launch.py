# gopyk remote launcher: launch — the launch action.
#
# Owns: checking launch parameters, the double fork of the detached
# supervisor, the pipes between it and the launcher (its one result, its
# progress lines, and the abort when the local side hangs up first), and
# relaying that progress as frames.
# May not: keep the key beyond handing params to the Supervisor, or write
# stdout other than through proto.py.

import json
import os
import selectors
import signal
import sys
import time

from .client import clean_stale_detached
from .common import Fail, rmtree, write_all
from .facts import host_facts
from .proto import control, progress
from .rundir import HOME_FULL, NO_ROOM, new_run_dir, no_room
from .slurm import SlurmSupervisor, slurm_args
from .specs import find_spec
from .supervisor import Supervisor


def launch(params, stdin):
    if not isinstance(params.get("kernel_name"), str) or not params["kernel_name"]:
        raise Fail("bad_params", "launch needs kernel_name")
    # An empty key is Jupyter's "no authentication", as in its connection files.
    if not isinstance(params.get("key"), str):
        raise Fail("bad_params", "launch needs key (a string; empty for unsigned messages)")
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
    params["home_full"] = HOME_FULL[0]
    # Connections to ctl wait in its backlog until the supervisor serves them.
    control(os.path.join(run_dir, "ctl"), run_dir)
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
    res = await_supervisor(ready_r, stdin, wait, run_dir)
    if res.get("ok"):
        clean_stale_detached()
    return res


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
                progress(msg)
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

        sup.log("supervisor failed: %s" % traceback.format_exc())
        if isinstance(e, OSError) and e.errno in NO_ROOM:
            tell({"ok": False, "code": "no_room", "error": "the supervisor cannot write its files: " + no_room(e.filename or sup.run_dir, e)})
        elif isinstance(e, OSError):
            tell({"ok": False, "code": "internal", "error": "the supervisor stopped on a system error: %s" % e})
        else:
            tell({"ok": False, "code": "internal", "error": "supervisor crashed (a bug in gopyk's launcher): %s: %s" % (type(e).__name__, e)})
        if sup.proc and sup.proc.poll() is None:
            sup.signal_kernel(signal.SIGKILL)
        rmtree(sup.run_dir)
