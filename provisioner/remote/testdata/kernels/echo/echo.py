# Listens where a kernel would (ipc or tcp, from the connection file) and
# echoes every connection; a connection that sends "close\n" is closed by us.
import json, os, selectors, socket, sys

cf = json.load(open(sys.argv[1]))
sel = selectors.DefaultSelector()
for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
    if cf["transport"] == "ipc":
        s = socket.socket(socket.AF_UNIX)
        s.bind("%s-%d" % (cf["ip"], cf[name]))
    else:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((cf["ip"], cf[name]))
    s.listen(16)
    sel.register(s, selectors.EVENT_READ, None)
while True:
    for key, _ in sel.select():
        if key.data is None:
            c, _ = key.fileobj.accept()
            sel.register(c, selectors.EVENT_READ, c)
            continue
        c = key.data
        try:
            data = c.recv(65536)
        except OSError:
            data = b""
        if not data or data.endswith(b"close\n"):
            sel.unregister(c)
            c.close()
            continue
        c.sendall(data)
