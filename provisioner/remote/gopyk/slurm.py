# gopyk remote launcher: slurm — the kernel as a Slurm batch job.
#
# Owns: class SlurmSupervisor (the supervisor on the login node, the kernel
# on a compute node: sbatch, scancel, scontrol, job.sh), Slurm's side of
# inspect (slurm_inspect) and of list (orphan_job).
# May not: put the key in job.sh, sbatch's argv or the job's output (the key
# is only in kernel.json, which job.sh reads), write to stdout.

import json
import os
import signal
import socket
import subprocess
import sys
import time

from .common import CHANNELS, Fail, num, oneline, tail, write_private
from .specs import format_argv, kernel_env, pub_hwm_argv
from .supervisor import Supervisor


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
            shlex.quote(a) for a in [sys.executable, "-c", JOB_PREP, self.cf] + pub_hwm_argv(self.argv, self.pub_shim())))
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
