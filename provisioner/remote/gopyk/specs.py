# gopyk remote launcher: specs — kernel specs, found as jupyter_client finds them.
#
# Owns: Jupyter's data path (jupyter_core.paths without importing it), spec
# lookup by name, ipykernel's built-in python3 spec, the kernel's argv and
# environment from a spec, ipykernel's PUB high-water mark (pub_hwm_argv).
# May not: start anything, write anything, see the key.

import json
import os
import sys

from .common import Fail


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


# Started through this instead of `-m MODULE`, a kernel's PUB sockets hold
# SNDHWM messages for a reader that falls behind, instead of ZMQ's 1,000.
# ipykernel drops whole iopub messages past its high-water mark, and on a
# busy machine the relay (which reads iopub as fast as it can and keeps the
# backlog: backlog.py) is sometimes scheduled out for as long as a kernel
# needs to write 1,000 of them. Everything else is what `python -m` does:
# sys.argv[0] is the module's file, sys.path[0] the working directory, the
# module runs as the real __main__.
PUB_SHIM = """import os, runpy, sys
try:
    import zmq
    _socket = zmq.Context.socket
    def socket(self, kind, *args, **kw):
        s = _socket(self, kind, *args, **kw)
        if kind == zmq.PUB:
            s.setsockopt(zmq.SNDHWM, %d)
        return s
    zmq.Context.socket = socket
except Exception:
    pass
del sys.argv[0]
if sys.path and sys.path[0] == "":
    sys.path[0] = os.getcwd()
getattr(runpy, "_run_module_as_main", runpy.run_module)(sys.argv[0])
"""
PUB_SHIM_MODULES = ("ipykernel_launcher", "ipykernel")
PYTHON_OPTS_WITH_ARG = ("-X", "-W")


def pub_hwm_argv(argv, hwm):
    """argv with ipykernel's PUB high-water mark raised to hwm, when argv is
    a python running ipykernel with -m; any other argv as it is."""
    if not argv or not os.path.basename(argv[0]).startswith("python"):
        return argv
    i = 1
    while i < len(argv) - 1:
        a = argv[i]
        if a == "-m":
            if argv[i + 1] in PUB_SHIM_MODULES:
                return argv[:i] + ["-c", PUB_SHIM % hwm] + argv[i + 1:]
            return argv
        if not a.startswith("-") or a.startswith("-c") or a.startswith("-m"):
            return argv  # a script, code, or -mMODULE: not ours to wrap
        i += 2 if a in PYTHON_OPTS_WITH_ARG else 1
    return argv

