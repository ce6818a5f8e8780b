# gopyk remote launcher: proto — the framed lines on stdout.
#
# Owns: MAGIC and PROTOCOL (provisioner/remote/protocol.go has the same), the
# frame format (a newline, MAGIC, one JSON object, a newline: whatever rc files
# print is ignored by the reader), the one reply of an exec action and the
# progress frames before it.
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


def progress(message):
    """A frame before the reply, which the local side shows at once (a job waiting in a queue)."""
    try:
        write_all(1, frame({"op": "progress", "message": message}))
    except OSError:
        pass
