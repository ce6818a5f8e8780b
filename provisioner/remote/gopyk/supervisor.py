# gopyk remote launcher: supervisor — owns one kernel process.
#
# Owns: class Supervisor: the connection file (kernel.json, 0600, the only
# file with the key), the kernel's start (own session, PR_SET_PDEATHSIG,
# JPY_PARENT_PID), readiness, exit and stop (SIGTERM, then SIGKILL),
# supervisor.log and state.json, the timers and the main loop. Its control
# socket is serve.py's ControlServer (a mixin), its streams are relay.py's
# (iopub's: backlog.py's).
# May not: put the key anywhere but kernel.json (not in a log, state.json,
# an argv or an answer), write to stdout (its stdio is /dev/null).

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

from .backlog import DEFAULT_BACKLOG
from .common import CHANNELS, num, tail, write_private, rmtree
from .relay import Endpoint, tune_malloc
from .rundir import free_tcp_ports, tcp_port_free
from .serve import Conn, ControlServer
from .specs import PUB_SHIM, format_argv, kernel_env, pub_hwm_argv


KILL_AFTER = 5.0  # seconds between SIGTERM and SIGKILL
LINGER = 10.0  # seconds a supervisor whose kernel exited waits for a restart
KERNEL_LOG_CAP = 16 << 20  # kernel.log beyond this keeps its last KERNEL_LOG_KEEP bytes
KERNEL_LOG_KEEP = 1 << 20
KERNEL_LOG_CHECK = 10.0  # seconds between looks at its size
DEFAULT_GRACE = 600.0


DEFAULT_SHUTDOWN = 10.0
DEFAULT_LAUNCH = 60.0


class Supervisor(ControlServer):
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
        self.backlog = int(num(params, "iopub_backlog", DEFAULT_BACKLOG))
        # While the relay cannot read (scheduled out, or at the bound) the
        # kernel's PUB socket holds up to a backlog of 64 KiB messages.
        self.pub_hwm = max(1000, self.backlog >> 16)
        self.cf = os.path.join(run_dir, "kernel.json")
        self.log_path = os.path.join(run_dir, "kernel.log")
        self.proc = None
        self.state = "new"  # starting, running, stopping, exited
        self.started = time.time()
        self.restarts = 0
        self.conns = {}
        self.streams = {}
        self.parked = []  # (conn, request) of streams waiting for the kernel to start
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

    def pub_shim(self):
        """specs.py's PUB_SHIM with this kernel's mark, in the run dir: its
        path, or None (the kernel keeps ZMQ's mark) if it cannot be written."""
        path = os.path.join(self.run_dir, "pubhwm.py")
        try:
            write_private(path, (PUB_SHIM % {"hwm": self.pub_hwm}).encode())
        except OSError as e:
            self.log("cannot write %s (%s): the kernel keeps ZMQ's high-water mark of 1,000 messages" % (path, e))
            return None
        return path

    def start_kernel(self, on_ready):
        """Start the kernel; on_ready(error_dict_or_None) once its sockets accept or it failed."""
        self.remove_ipc_files()
        self.write_connection_file()
        self.argv = format_argv(self.spec["argv"], self.cf, self.spec.get("resource_dir")) + self.p.get("kernel_args", [])
        extra = self.p.get("env") or {}
        env = kernel_env(self.spec.get("env") or {}, {k: str(v) for k, v in extra.items()})
        env["JPY_PARENT_PID"] = str(os.getpid())  # ipykernel exits when we are gone
        ipy = os.path.join(os.path.expanduser("~"), ".ipython")
        if self.p.get("home_full") and "IPYTHONDIR" not in env and not os.path.isdir(ipy):
            # IPython dies making its profile in a full home: give it one here.
            env["IPYTHONDIR"] = os.path.join(self.run_dir, "ipython")
            self.log("the home is full and has no %s: IPYTHONDIR=%s" % (ipy, env["IPYTHONDIR"]))
        cwd = self.p.get("cwd") or os.path.expanduser("~")
        argv = pub_hwm_argv(self.argv, self.pub_shim())
        logfd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=logfd, stderr=logfd, env=env, cwd=cwd,
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
        self.log("kernel started: pid %d argv %s%s" % (self.proc.pid, self.argv, "" if argv is self.argv else
                                                       " (its PUB sockets hold %d messages)" % self.pub_hwm))
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
        self.timer("log-cap", KERNEL_LOG_CHECK, self.cap_log)

    def cap_log(self):
        """Keep kernel.log bounded. ipykernel echoes what it captures at the
        file-descriptor level (C libraries, os.system, child processes) to
        its own stdout, this file, for as long as the kernel lives: a quota'd
        home would fill. The kernel appends (O_APPEND), so cutting the file
        under it is safe."""
        self.timer("log-cap", KERNEL_LOG_CHECK, self.cap_log)
        try:
            if os.path.getsize(self.log_path) <= KERNEL_LOG_CAP:
                return
            with open(self.log_path, "rb") as f:
                f.seek(-KERNEL_LOG_KEEP, 2)
                kept = f.read()
            kept = kept[kept.find(b"\n") + 1:]  # from a line's start
            os.truncate(self.log_path, 0)
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, b"[gopyk: kernel.log passed %d MiB: earlier output was dropped]\n" % (KERNEL_LOG_CAP >> 20) + kept)
            finally:
                os.close(fd)
        except OSError as e:
            self.log("cannot keep %s under %d MiB: %s" % (self.log_path, KERNEL_LOG_CAP >> 20, e))
            self.cancel("log-cap")

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
        for c, _ in self.parked:
            c.sock.close()
        self.parked = []
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
            self.flush_parked()
            for c in self.leases():
                if c.ping_timeout and now - c.last_seen > c.ping_timeout:
                    self.log("lease silent for %gs: dropped" % c.ping_timeout)
                    self.drop(c)
        self.cleanup()


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
