"""Drive a kernel through its connection file with jupyter_client (test helper).

usage: client.py CONNECTION_FILE info|exec CODE|sleep|shutdown
"""
import sys

from jupyter_client import BlockingKernelClient

cf, mode = sys.argv[1], sys.argv[2]
kc = BlockingKernelClient(connection_file=cf)
kc.load_connection_file()
kc.start_channels(hb=False)
kc.wait_for_ready(timeout=30)
if mode == "info":
    kc.kernel_info()
    print("STATUS", kc.get_shell_msg(timeout=10)["content"]["status"], flush=True)
elif mode == "exec":
    out = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "execute_result":
            out.append(msg["content"]["data"]["text/plain"])

    reply = kc.execute_interactive(sys.argv[3], timeout=30, output_hook=hook)
    print("OUT", "".join(out).strip(), flush=True)
    print("STATUS", reply["content"]["status"], flush=True)
elif mode == "sleep":
    # Wait until the cell itself runs: a SIGINT that lands in ipykernel's own
    # code before the cell starts can be lost.
    mid = kc.execute("import time; print('sleeping', flush=True); time.sleep(100)")
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == mid and msg["msg_type"] == "stream":
            break
    print("BUSY", flush=True)
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == mid:
            break
    print("ENAME", reply["content"].get("ename"), flush=True)
elif mode == "shutdown":
    kc.shutdown()
    print("SHUTDOWN", kc.get_control_msg(timeout=10)["content"]["status"], flush=True)
kc.stop_channels()
