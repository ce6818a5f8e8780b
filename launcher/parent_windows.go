package launcher

// processAlive: on Windows jupyter_client passes a process handle, not a
// pid, in JPY_PARENT_PID; re-parenting alone is watched there.
func processAlive(int) bool { return true }
