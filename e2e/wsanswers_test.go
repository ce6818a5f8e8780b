//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wire"
)

// What real servers answer a WebSocket upgrade when something is wrong, and
// the sentence the user gets for each, from OpenSSH's ssh through `gopyk
// ws-proxy`, from a kernel launch (the in-process dial) and from `gopyk
// list`, each within 2 s: Debian's JupyterHub 3 for a stopped server and a
// refused token, Jupyter Server 1.23 (TrailingSlashHandler, 404) for a
// wrong endpoint, the jupyter-server-proxy-like gateway for a 403.
func TestWSServerAnswers(t *testing.T) {
	sshd := testbed.SSHDForTest(t, testbed.Options{})
	hub := testbed.HubForTest(t, "gpktest")
	gw := testbed.GatewayForTest(t, sshd.Addr, testbed.GatewayOptions{})
	e := localEnv(t, sshd, "gpk_answers")
	srv := jupyterServerAt(t, e, "/user/gpktest/")

	dir := t.TempDir()
	tokenFile := func(name, tok string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	hubTok, wrong, srvTok := tokenFile("hub", hub.Token), tokenFile("wrong", "not-the-token"), tokenFile("srv", srv.token)
	ws := func(base, path string) string { return strings.Replace(base, "http://", "ws://", 1) + path }
	for _, tc := range []struct {
		name, url, token, want string
	}{
		{"server not running", ws(hub.URL, "/user/gpktest/sshd/"), hubTok,
			`your server is not running: the Hub says "JupyterHub server no longer running at /user/gpktest/sshd/. Restart the server at ` + hub.URL + `/hub/spawn/gpktest"`},
		{"token refused by the Hub", ws(hub.URL, "/user/gpktest/sshd/"), wrong, "the Hub sent it to its login page: the token or cookie was not accepted"},
		{"no such endpoint", ws(srv.base, "/user/gpktest/sshdd/"), srvTok,
			"302 Found to /user/gpktest/sshdd (the same path without its slash): the server runs but has no such endpoint; check the URL, or jupyter-sshd-proxy is not installed on it"},
		{"no such endpoint without a slash", ws(srv.base, "/user/gpktest/sshdd"), srvTok, "404 Not Found: the server runs but has no such endpoint"},
		{"403", gw.URL, wrong, "403 Forbidden: the token or cookie was rejected; check the credentials from --token-file " + wrong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := wsConfig(t, sshd, t.TempDir(), filepath.Join(binDir, "gopyk")+" ws-proxy --token-file "+tc.token+" "+tc.url)
			within := func(what string, f func() (string, int)) {
				t.Helper()
				t0 := time.Now()
				out, code := f()
				el := time.Since(t0)
				if code == 0 || !strings.Contains(out, tc.want) {
					t.Errorf("%s: exit %d, output lacks %q:\n%s", what, code, tc.want, out)
				}
				if el > 2*time.Second {
					t.Errorf("%s took %v, want ≤ 2 s", what, el)
				}
				for _, l := range strings.Split(out, "\n") {
					if strings.Contains(l, tc.want) {
						t.Logf("%s, %v: %s", what, el.Round(time.Millisecond), strings.TrimSpace(l))
					}
				}
			}
			within("ssh via gopyk ws-proxy", func() (string, int) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c := exec.CommandContext(ctx, "ssh", "-F", cfg, "gpk-ws", "true")
				out, _ := c.CombinedOutput()
				return string(out), c.ProcessState.ExitCode()
			})
			spec := "gpk_answers_" + strings.ReplaceAll(tc.name, " ", "_")
			e.gopyk("add", "--kernel-name", spec, "--ssh-host-alias", "gpk-ws", "--ssh-config", cfg,
				"--remote-kernel-name", "python3", "--remote-python", python)
			within("kernel launch", func() (string, int) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c := e.cmd(ctx, filepath.Join(binDir, "gopyk-kernel"), "--kernel", spec, "--connection-file", filepath.Join(e.home, spec+".json"))
				out, _ := c.CombinedOutput()
				return string(out), c.ProcessState.ExitCode()
			})
			within("gopyk list", func() (string, int) { return e.gopykCode("list", "--launch", spec) })
			e.gopyk("delete", spec)
		})
	}
}

// jupyterServerAt starts Debian's Jupyter Server as a Hub's single-user
// server would be, under base.
func jupyterServerAt(t *testing.T, e *env, base string) *jserver {
	t.Helper()
	port := freeTCPPort(t)
	s := &jserver{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), token: wire.NewKey()}
	cfg := filepath.Join(t.TempDir(), "jupyter_server_config.py")
	os.WriteFile(cfg, []byte(fmt.Sprintf("c.ServerApp.token = %q\n", s.token)), 0o600)
	p := e.start(python, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ip=127.0.0.1",
		fmt.Sprintf("--port=%d", port), "--port-retries=0", "--config="+cfg, "--ServerApp.base_url="+base,
		"--ServerApp.root_dir="+e.home)
	waitFor(t, 60*time.Second, "jupyter server", func() bool {
		select {
		case <-p.done:
			t.Fatalf("jupyter server exited: %s", p.output())
		default:
		}
		resp, err := http.Get(s.base + base + "api")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return s
}
