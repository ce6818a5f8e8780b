"""Launch kernel specs the way Jupyter does and print one JSON line per
launch: KernelManager.start_kernel() until wait_for_ready() (a
kernel_info_reply and a message on iopub), then a graceful shutdown.
Usage: launch.py PLAN_JSON, a list of [spec, dir_to_delete_first_or_empty,
argv_to_run_first_or_empty] run in order (the Go side interleaves the series, so load drifts on a busy
machine hit every series alike)."""
import json
import shutil
import subprocess
import sys
import time

from jupyter_client import KernelManager


def main():
    plan = json.loads(sys.argv[1])
    for i, (name, cold, pre) in enumerate(plan):
        if cold:
            shutil.rmtree(cold, ignore_errors=True)
        if pre:
            subprocess.run(pre, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        km = KernelManager(kernel_name=name)
        t0 = time.perf_counter()
        km.start_kernel()
        kc = km.client()
        # No heartbeat channel: its 1 s time_to_dead misfires at 100 ms RTT,
        # and Jupyter Server decides liveness from the process anyway.
        kc.start_channels(hb=False)
        try:
            kc.wait_for_ready(timeout=120)
            t1 = time.perf_counter()
        except Exception as e:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            print(json.dumps({"i": i, "error": "%s: %s" % (type(e).__name__, e)}), flush=True)
            sys.exit(1)
        kc.stop_channels()
        t2 = time.perf_counter()
        km.shutdown_kernel(now=False)
        t3 = time.perf_counter()
        print(json.dumps({"i": i, "launch": t1 - t0, "shutdown": t3 - t2}), flush=True)


main()
