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
    ns = {"prefix": sys.prefix}
    if connection_file:  # else (gopyk list) {connection_file} stays as it is
        ns["connection_file"] = os.path.realpath(connection_file)
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


# The kernel's PUB high-water mark. ipykernel drops whole iopub messages
# past it (ZMQ's 1,000), and on a busy machine the relay, which reads iopub
# as fast as it can and keeps the backlog (backlog.py), is sometimes
# scheduled out for as long as a kernel needs to write 1,000 of them. So a
# `python -m ipykernel_launcher …` spec runs as `python RUN_DIR/pubhwm.py
# ipykernel_launcher …`: this script (the supervisor writes it with the
# mark), which sets SNDHWM on the kernel's PUB sockets and is `python -m` in
# everything else: sys.argv[0] is the module's file, sys.path[0] what -m
# puts there, the module runs as the real __main__. A file, not -c code: a
# wrapper script named python… that re-splits its arguments passes a path
# intact, and ps shows the kernel for what it is.
PUB_SHIM = """# gopyk: `python -m MODULE ARGS` with the kernel's PUB sockets holding
# %(hwm)d messages instead of ZMQ's 1,000 (the remote launcher's specs.py).
# It leaves nothing in __main__, where MODULE runs.
def __gopyk():
    import os, runpy, sys
    try:
        import zmq
        plain = zmq.Context.socket

        def socket(self, kind, *args, **kw):
            s = plain(self, kind, *args, **kw)
            if kind == zmq.PUB:
                s.setsockopt(zmq.SNDHWM, %(hwm)d)
            return s
        zmq.Context.socket = socket
    except Exception:
        pass
    del sys.argv[0]
    here = (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.realpath(__file__)))
    if sys.path and sys.path[0] in here:
        sys.path[0] = os.getcwd() if sys.version_info >= (3, 7) else ""
    del globals()["__gopyk"]
    return getattr(runpy, "_run_module_as_main", runpy.run_module), sys.argv[0]


(lambda run: run[0](run[1]))(__gopyk())
"""
PUB_SHIM_MODULES = ("ipykernel_launcher", "ipykernel")
PYTHON_OPTS_WITH_ARG = ("-X", "-W")


def pub_hwm_argv(argv, shim):
    """argv run through the shim file, when argv is a python running
    ipykernel with -m; any other argv (or with no shim) as it is."""
    if not shim or not argv or not os.path.basename(argv[0]).startswith("python"):
        return argv
    i = 1
    while i < len(argv) - 1:
        a = argv[i]
        if a == "-m":
            if argv[i + 1] in PUB_SHIM_MODULES:
                return argv[:i] + [shim] + argv[i + 1:]
            return argv
        if not a.startswith("-") or a.startswith("-c") or a.startswith("-m"):
            return argv  # a script, code, or -mMODULE: not ours to wrap
        i += 2 if a in PYTHON_OPTS_WITH_ARG else 1
    return argv
