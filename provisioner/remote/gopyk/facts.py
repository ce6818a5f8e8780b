# gopyk remote launcher: facts — the inspect action (what `gopyk list` shows).
#
# Owns: host facts (hostname, user, uname, python) and the inspect reply:
# jupyter_client's version, the kernel spec, Slurm's commands when asked.
# May not: start or change anything, see the key (inspect has none).

import os
import socket
import sys

from .common import Fail
from .specs import find_spec, format_argv
from .slurm import slurm_inspect


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
        rd = spec.get("resource_dir") or ""
        argv = format_argv(spec["argv"], None, rd)
        res.update(kernel_name=os.path.basename(rd) if os.path.isfile(os.path.join(rd, "kernel.json")) else name.lower(),
                   spec_dir=rd, interrupt_mode=spec["interrupt_mode"], argv=argv)
    return res
