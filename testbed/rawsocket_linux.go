package testbed

import (
	"bufio"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

//go:embed rawsocket.py
var rawSocketPy []byte

// Gateway is a WebSocket gateway in front of a TCP address that behaves like
// jupyter-server-proxy's raw socket handler (JupyterHub's jupyter-sshd-proxy):
// tornado from Debian, one binary message per block read from the target,
// and Nagle left on towards the client (and towards the target with
// NagleBackend), as the real handler leaves it.
type Gateway struct {
	URL       string // ws://127.0.0.1:PORT/user/NAME/sshd/
	Token     string
	TokenFile string // mode 0600, for gopyk ws-proxy --token-file
	Dir       string

	cmd    *exec.Cmd
	exited chan struct{}
	once   sync.Once
	log    string
}

// GatewayOptions configure StartGateway.
type GatewayOptions struct {
	Path string // URL path; default /user/gpktest/sshd/
	// NagleBackend leaves Nagle on towards the target too (jupyter-server-proxy
	// gets TCP_NODELAY there from asyncio; a proxy written otherwise may not).
	NagleBackend bool
}

// StartGateway starts the gateway for target (host:port) on a free loopback port.
func StartGateway(ctx context.Context, target string, o GatewayOptions) (*Gateway, error) {
	if o.Path == "" {
		o.Path = "/user/gpktest/sshd/"
	}
	dir, err := os.MkdirTemp("", "gopyk-gateway-")
	if err != nil {
		return nil, err
	}
	g := &Gateway{Dir: dir, Token: randomToken(), exited: make(chan struct{})}
	g.TokenFile = filepath.Join(dir, "token")
	script := filepath.Join(dir, "rawsocket.py")
	g.log = filepath.Join(dir, "gateway.log")
	for f, b := range map[string][]byte{g.TokenFile: []byte(g.Token + "\n"), script: rawSocketPy} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	g.URL = fmt.Sprintf("ws://127.0.0.1:%d%s", port, o.Path)
	args := []string{script, "--port", fmt.Sprint(port), "--target", target, "--token-file", g.TokenFile, "--path", o.Path}
	if o.NagleBackend {
		args = append(args, "--nagle-backend")
	}
	g.cmd = exec.Command("/usr/bin/python3", args...)
	logf, err := os.Create(g.log)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	out, err := g.cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	g.cmd.Stderr = logf
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := g.cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start the gateway (python3-tornado): %w", err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := sc.Scan() && sc.Text() == "listening"
		ready <- ok
		for sc.Scan() {
		}
	}()
	go func() { g.cmd.Wait(); logf.Close(); close(g.exited) }()
	select {
	case ok := <-ready:
		if ok {
			return g, nil
		}
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
	}
	g.Stop()
	b, _ := os.ReadFile(g.log)
	return nil, fmt.Errorf("the gateway did not start: %s", strings.TrimSpace(string(b)))
}

// GatewayForTest is StartGateway, stopped at the end of t.
func GatewayForTest(t testing.TB, target string, o GatewayOptions) *Gateway {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := StartGateway(ctx, target, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	return g
}

// ProxyCommand is `gopyk ws-proxy` for this gateway, gopyk being the binary at gopyk.
func (g *Gateway) ProxyCommand(gopyk string) string {
	return gopyk + " ws-proxy --token-file " + g.TokenFile + " " + g.URL
}

// Stop kills the gateway (by its process group) and removes its files.
func (g *Gateway) Stop() {
	g.once.Do(func() {
		syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		<-g.exited
		os.RemoveAll(g.Dir)
	})
}

// Log is what the gateway wrote on stderr so far.
func (g *Gateway) Log() string {
	b, _ := os.ReadFile(g.log)
	return string(b)
}

// Addr is the gateway's host:port.
func (g *Gateway) Addr() string {
	h := strings.TrimPrefix(g.URL, "ws://")
	return h[:strings.IndexByte(h, '/')]
}

func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
