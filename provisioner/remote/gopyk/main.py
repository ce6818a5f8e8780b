# gopyk remote launcher: main — the entry point the bootstrap calls.
#
# Owns: parsing the parameter line, dispatching the action, the one reply
# (or Fail's error reply, or "internal" for a bug) and the process exit.
# May not: print the parameters (they hold the key), write stdout other than
# through proto.py.

import json
import os
import sys

from .client import control_call, list_kernels
from .common import Fail, num
from .facts import inspect
from .launch import launch
from .mux import forward_probe, mux
from .proto import reply


def main(params_line, stdin, cache_warning=""):
    """Run the action of params_line (the JSON line the bootstrap read from
    stdin, the key included); stdin is the rest of it. Never returns."""
    try:
        try:
            params = json.loads(params_line.decode())
            if not isinstance(params, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError) as e:
            raise Fail("bad_params", "launch parameters are not a JSON object: %s" % e)
        action = params.get("action")
        if action == "launch":
            res = launch(params, stdin)
        elif action in ("status", "attach"):
            rd = params.get("run_dir")
            if not isinstance(rd, str) or not rd:
                raise Fail("bad_params", "%s needs run_dir" % action)
            res = control_call(rd, {"op": "status"})
        elif action == "control":
            rd, req = params.get("run_dir"), params.get("request")
            if not isinstance(rd, str) or not isinstance(req, dict):
                raise Fail("bad_params", "control needs run_dir and request")
            res = control_call(rd, req, timeout=num(params, "timeout", 30.0))
        elif action == "list":
            res = list_kernels()
        elif action == "inspect":
            res = inspect(params)
        elif action == "mux":
            mux(params)
        elif action == "forward_probe":
            forward_probe(params)
        else:
            raise Fail("bad_params", "unknown action %r" % (action,))
        if cache_warning:
            res["cache_warning"] = cache_warning
        reply(res)
    except Fail as e:
        reply(e.reply())
    except Exception as e:  # a bug: still one clear framed reply
        reply({"ok": False, "code": "internal", "error": "%s: %s" % (type(e).__name__, e)})
    sys.stdout.flush()
    os._exit(0)
