# gopyk remote launcher: proto — the framed lines on stdout.
#
# Owns: MAGIC and PROTOCOL (provisioner/remote/protocol.go has the same), the
# frame format (a newline, MAGIC, one JSON object, a newline: whatever rc files
# print is ignored by the reader), the one reply of an exec action and the
# progress frames before it, and the control frame that says where the
# supervisor will listen.
# May not: put the key in a frame; nothing else in the package writes frames
# on stdout (mux.py's carrier starts only after its reply frame).

import json

from .common import write_all


MAGIC = "@@gopyk1@@"
PROTOCOL = 1


def frame(obj):
    # The leading newline separates us from rc-file output without one.
    return ("\n" + MAGIC + json.dumps(obj, separators=(",", ":")) + "\n").encode()


def reply(obj):
    obj.setdefault("protocol", PROTOCOL)
    try:
        write_all(1, frame(obj))
    except OSError:
        pass  # the local side went away; nothing left to tell


def control(path, run_dir):
    """The control socket is bound (the kernel is not started yet): the local
    side opens its link, lease and streams now, so they are ready with the
    kernel instead of a few round trips after it (streams wait at the
    supervisor until the kernel accepts)."""
    try:
        write_all(1, frame({"op": "control", "control": path, "run_dir": run_dir}))
    except OSError:
        pass


def progress(message):
    """A frame before the reply, which the local side shows at once (a job waiting in a queue)."""
    try:
        write_all(1, frame({"op": "progress", "message": message}))
    except OSError:
        pass
