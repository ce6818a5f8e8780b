//go:build linux

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The connection's state where the user looks: jupyter-server runs two
// kernels of the same host, one spec with connection notices (the default)
// and one with them off, each running a 30 s cell while the link drops for
// 20 s. Through jupyter-server's kernel WebSocket (what JupyterLab reads),
// the first cell's output is: its own first line, "connection … lost",
// "reconnected after …", its own last line, in that order; the second
// cell's is its own two lines only.
func TestNetnsNoticesThroughJupyterServer(t *testing.T) {
	t.Parallel()
	e, ns := newNetEnv(t, 120)
	quiet := "gpk_e2e_quiet"
	e.gopyk("add", "--kernel-name", quiet, "--display-name", "gopyk e2e quiet",
		"--ssh-host-alias", e.sshd.Alias, "--ssh-config", e.sshd.ConfigFile,
		"--remote-kernel-name", "python3", "--remote-python", python)
	e.gopyk("edit", "--kernel-name", quiet, "--connection-notices", "off")
	runChild(t, e, ns, childConfig{Mode: "notices", Spec2: quiet, Down: 20 * time.Second, Gopyk: readGopyk(t, e)}, 5*time.Minute)
	waitNoSessions(t, e)
}

func childNotices(t *testing.T, e *env, cfg childConfig) {
	s := e.startServer()
	start := func(spec string) (string, *wsKernel) {
		code, b := s.do("POST", "/api/kernels", map[string]any{"name": spec})
		if code != 201 {
			t.Fatalf("POST /api/kernels %s = %d: %s", spec, code, b)
		}
		var k struct{ ID string }
		json.Unmarshal(b, &k)
		ws := s.channels(k.ID)
		if r := ws.execute("x = 1", 90*time.Second); r.status != "ok" {
			t.Fatalf("%s: first cell: %+v", spec, r)
		}
		return k.ID, ws
	}
	loudID, loud := start(cfg.Spec)
	quietID, quiet := start(cfg.Spec2)
	cell := "import time\nprint('cell started', flush=True)\ntime.sleep(30)\nprint('cell ended', flush=True)"
	loudCell, quietCell := loud.submit(cell), quiet.submit(cell)
	loudOut, quietOut := &cellOutput{}, &cellOutput{}
	loud.follow(t, loudCell, loudOut, "cell started", 60*time.Second)
	quiet.follow(t, quietCell, quietOut, "cell started", 60*time.Second)
	tDown := link(t, cfg.Iface, "down")
	time.Sleep(time.Until(tDown.Add(cfg.Down))) // the outage itself, not a synchronisation
	link(t, cfg.Iface, "up")
	loud.follow(t, loudCell, loudOut, "", 90*time.Second)
	quiet.follow(t, quietCell, quietOut, "", 90*time.Second)
	t.Logf("with notices:\n%s", strings.Join(loudOut.lines, "\n"))
	t.Logf("notices off:\n%s", strings.Join(quietOut.lines, "\n"))

	want := []string{"stdout: cell started", "stderr: gopyk: connection to " + cfg.Gopyk.SSHHostAlias + " lost at ", "stderr: gopyk: reconnected after ", "stdout: cell ended"}
	if len(loudOut.lines) != len(want) {
		t.Fatalf("the cell's output with notices is %q, want 4 lines like %q", loudOut.lines, want)
	}
	for i, w := range want {
		if !strings.HasPrefix(loudOut.lines[i], w) {
			t.Errorf("output line %d is %q, want %q…", i, loudOut.lines[i], w)
		}
	}
	if !strings.HasSuffix(loudOut.lines[2], "; nothing was lost\n") {
		t.Errorf("the reconnect line %q does not say nothing was lost", loudOut.lines[2])
	}
	if q := strings.Join(quietOut.lines, "|"); q != "stdout: cell started\n|stdout: cell ended\n" {
		t.Errorf("with connection notices off the cell's output is %q, want its own two lines", quietOut.lines)
	}
	for _, id := range []string{loudID, quietID} {
		if code, b := s.do("DELETE", "/api/kernels/"+id, nil); code != 204 {
			t.Fatalf("DELETE = %d: %s", code, b)
		}
	}
}

// cellOutput is what one cell showed, as "name: text" per stream message.
type cellOutput struct {
	lines          []string
	replied, idle  bool
	status, result string
}

// follow reads the cell's messages into out until its output contains
// until ("" : until its reply and idle status).
func (w *wsKernel) follow(t *testing.T, id string, out *cellOutput, until string, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		if until != "" && strings.Contains(strings.Join(out.lines, ""), until) || until == "" && out.replied && out.idle {
			return
		}
		select {
		case m, ok := <-w.in:
			if !ok {
				t.Fatal("kernel websocket closed")
			}
			ph, _ := m["parent_header"].(map[string]any)
			if ph["msg_id"] != id {
				continue
			}
			c, _ := m["content"].(map[string]any)
			switch m["msg_type"] {
			case "stream":
				name, _ := c["name"].(string)
				text, _ := c["text"].(string)
				out.lines = append(out.lines, name+": "+text)
			case "execute_reply":
				out.replied = true
				out.status, _ = c["status"].(string)
			case "status":
				out.idle = c["execution_state"] == "idle"
			}
		case <-timeout:
			t.Fatalf("cell %s: timed out after %v; output so far %q", id, d, out.lines)
		}
	}
}
