package testbed

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Hub is Debian's JupyterHub 3 behind its configurable-http-proxy, with one
// user (DummyAuthenticator) whose server is never started: what a user of
// jupyter-sshd-proxy meets when the Hub's idle culler stopped their server.
type Hub struct {
	URL   string // http://127.0.0.1:PORT (the proxy, as users reach the Hub)
	User  string
	Token string // an API token of User
	Dir   string

	cmd     *exec.Cmd
	exited  chan struct{}
	once    sync.Once
	pidFile string
}

// StartHub starts a Hub for user on free loopback ports.
func StartHub(ctx context.Context, user string) (*Hub, error) {
	dir, err := os.MkdirTemp("", "gopyk-hub-")
	if err != nil {
		return nil, err
	}
	h := &Hub{User: user, Token: randomToken(), Dir: dir, exited: make(chan struct{}), pidFile: filepath.Join(dir, "proxy.pid")}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	h.URL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	// The token reaches the Hub in its config file (0600), not on argv.
	cfg := fmt.Sprintf(`c.JupyterHub.bind_url = %q
c.JupyterHub.hub_bind_url = "http://127.0.0.1:%d"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d"
c.ConfigurableHTTPProxy.pid_file = %q
c.JupyterHub.db_url = "sqlite:///%s/hub.sqlite"
c.JupyterHub.cookie_secret_file = "%s/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {%q}
c.JupyterHub.api_tokens = {%q: %q}
`, h.URL, ports[1], ports[2], h.pidFile, dir, dir, user, h.Token, user)
	cfgFile := filepath.Join(dir, "jupyterhub_config.py")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "hub.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	h.cmd = exec.Command("jupyterhub", "-f", cfgFile)
	h.cmd.Dir = dir
	// Debian's configurable-http-proxy finds its modules there; a nodejs
	// from elsewhere does not look by itself.
	h.cmd.Env = append(os.Environ(), "NODE_PATH=/usr/share/nodejs:/usr/lib/nodejs")
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start jupyterhub (Debian package jupyterhub): %w", err)
	}
	go func() { h.cmd.Wait(); logf.Close(); close(h.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-h.exited:
			log := h.Log()
			h.Stop()
			return nil, fmt.Errorf("jupyterhub exited: %s", tail(log, 2000))
		case <-ctx.Done():
			h.Stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if resp, err := http.Get(h.URL + "/hub/api/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return h, nil
			}
		}
		if time.Now().After(deadline) {
			log := h.Log()
			h.Stop()
			return nil, fmt.Errorf("jupyterhub did not answer within 60s: %s", tail(log, 2000))
		}
	}
}

// HubForTest is StartHub, stopped at the end of t.
func HubForTest(t testing.TB, user string) *Hub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	h, err := StartHub(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return h
}

// Stop asks the Hub to stop (it stops its proxy), kills what is left by
// PID, and removes its files.
func (h *Hub) Stop() {
	h.once.Do(func() {
		syscall.Kill(h.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-h.exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
			<-h.exited
		}
		// The proxy runs in a session of its own.
		if b, err := os.ReadFile(h.pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				if p, ok := readProc(pid); ok && strings.Contains(p.comm, "node") {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		os.RemoveAll(h.Dir)
	})
}

// Log is the Hub's log so far.
func (h *Hub) Log() string {
	b, _ := os.ReadFile(filepath.Join(h.Dir, "hub.log"))
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
