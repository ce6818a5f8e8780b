# gopyk remote launcher: Python 3.6+ standard library only.
#
# The bootstrap in provisioner/remote/command.go runs main.main() from this
# package with the parameter line it read from stdin (the HMAC key included).
# Every module opens with what it owns and what it may not touch; in import
# order (each imports only those above it):
#
#   common      Fail, private files, small helpers
#   proto       the framed lines on stdout (MAGIC + JSON)
#   specs       kernel specs, found as jupyter_client finds them
#   rundir      run dirs and their control socket
#   relay       relayed streams to the kernel's sockets (class Stream)
#   backlog     iopub read at the kernel's pace, its backlog spilled to disk
#   serve       the supervisor's control socket (leases, requests, grace)
#   supervisor  the process that owns one kernel (class Supervisor)
#   slurm       the kernel as a Slurm job (class SlurmSupervisor)
#   facts       the inspect action
#   client      the status, attach, control and list actions
#   launch      the launch action (forks the supervisor)
#   mux         the mux and forward_probe actions
#   main        the entry: parameters, dispatch, the one reply
#
# Rules for every module: nothing may ever print, log or put on a command line
# the key; only proto writes frames on stdout; every module is imported before
# an action runs (main imports them all), so a running supervisor never needs
# its files again (old_launchers may remove them).
