//go:build linux

package remote

import (
	"os/exec"
	"testing"
)

// A supervisor that is exiting closes a control connection it never read:
// the caller (gopyk list's remote list, status) is told it is gone, as for
// a missing socket, rather than failing with ECONNRESET.
func TestControlCallSupervisorExiting(t *testing.T) {
	dir := t.TempDir()
	driver := `import os, socket, sys, threading, time
sys.path.insert(0, sys.argv[1])
from gopyk.client import control_call
from gopyk.common import Fail
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(os.path.join(sys.argv[2], "ctl"))
srv.listen(1)
def closer():
    c, _ = srv.accept()
    while not c.recv(1, socket.MSG_PEEK):
        time.sleep(0.01)
    c.close()  # unread data: the peer reads ECONNRESET
threading.Thread(target=closer, daemon=True).start()
try:
    control_call(sys.argv[2], {"op": "status"}, timeout=10)
except Fail as e:
    print(e.code)
`
	out, err := exec.Command("/usr/bin/python3", "-c", driver, ".", dir).CombinedOutput()
	if err != nil || string(out) != "gone\n" {
		t.Errorf("control_call on a supervisor that closes unread: %q %v, want gone", out, err)
	}
}
