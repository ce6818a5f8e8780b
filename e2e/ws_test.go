//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wire"
	"github.com/gopyk/gopyk/wsproxy"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// wsGate is Debian's websockify with TLS (a test CA) and an auth plugin from
// wsproxy/testdata, in front of a test sshd: the shape of JupyterHub's
// jupyter-sshd-proxy and of cookie-authenticated notebook platforms.
type wsGate struct {
	url    string // wss://127.0.0.1:PORT/
	port   int
	ca     string // PEM of the CA that signed the gateway's certificate
	secret string // the token or cookie value the plugin accepts
	cred   string // file gopyk ws-proxy reads the credential from
	flag   string // --token-file or --cookie-file
	dir    string
}

func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeTestPKI writes a CA certificate and a server certificate and key for
// 127.0.0.1 into dir.
func writeTestPKI(t testing.TB, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gopyk e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"hub.gpk.test"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "gw.crt"), filepath.Join(dir, "gw.key")
	for f, b := range map[string][]byte{
		caFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// startGate runs websockify for sshd with the auth plugin "Token" or "Cookie".
func startGate(t testing.TB, sshd *testbed.SSHD, plugin string) *wsGate {
	t.Helper()
	return startGateTo(t, sshd.Addr, plugin)
}

// startGateTo is startGate for any target address.
func startGateTo(t testing.TB, target, plugin string) *wsGate {
	t.Helper()
	dir := t.TempDir()
	g := &wsGate{port: freeTCPPort(t), dir: dir, secret: wire.NewKey()}
	g.url = fmt.Sprintf("wss://127.0.0.1:%d/user/gpktest/sshd/", g.port)
	var cert, key string
	g.ca, cert, key = writeTestPKI(t, dir)
	// The gateway reads its secret from a file too: no secret on any argv.
	srvSecret := filepath.Join(dir, "server-secret")
	cred := g.secret
	g.flag = "--token-file"
	if plugin == "Cookie" {
		cred, g.flag = "gpk-session="+g.secret, "--cookie-file"
	}
	g.cred = filepath.Join(dir, "credential")
	for f, b := range map[string]string{srvSecret: g.secret, g.cred: cred + "\n"} {
		if err := os.WriteFile(f, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	testdata, err := filepath.Abs("../wsproxy/testdata")
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command("websockify", "--cert", cert, "--key", key, "--ssl-only",
		"--auth-plugin", "gpkauth."+plugin, "--auth-source", srvSecret,
		fmt.Sprintf("127.0.0.1:%d", g.port), target)
	c.Env = append(os.Environ(), "PYTHONPATH="+testdata)
	logf, err := os.Create(filepath.Join(dir, "websockify.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.Stdout, c.Stderr = logf, logf
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatalf("start websockify: %v", err)
	}
	exited := make(chan struct{})
	go func() { c.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("websockify exited:\n%s", b)
		default:
		}
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", g.port), time.Second); err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("websockify did not listen within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return g
}

// proxyCommand is the ssh ProxyCommand reaching g; extra goes before the URL.
func (g *wsGate) proxyCommand(extra ...string) string {
	args := append([]string{filepath.Join(binDir, "gopyk"), "ws-proxy", g.flag, g.cred, "--cacert", g.ca}, extra...)
	return strings.Join(append(args, g.url), " ")
}

// wsConfig writes an ssh config whose alias "gpk-ws" reaches sshd only
// through the gateway; HostKeyAlias names the host key, as users of
// jupyter-sshd-proxy do.
func wsConfig(t testing.TB, sshd *testbed.SSHD, dir, proxyCommand string) string {
	t.Helper()
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte("gpk-ws-hostkey "+sshd.HostKeyPub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`Host gpk-ws
  HostName hub.invalid
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  HostKeyAlias gpk-ws-hostkey
  StrictHostKeyChecking yes
  UpdateHostKeys no
  BatchMode yes
  ControlMaster no
  ControlPath none
  ProxyCommand %s
`, sshd.User, sshd.ClientKey, kh, proxyCommand)
	path := filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// newWSEnv is newEnv with the spec's host reached through a gateway.
func newWSEnv(t *testing.T, plugin string, proxyExtra ...string) (*env, *wsGate) {
	t.Helper()
	sshd := testbed.SSHDForTest(t, testbed.Options{})
	g := startGate(t, sshd, plugin)
	e := localEnv(t, sshd, "gpk_ws")
	cfg := wsConfig(t, sshd, g.dir, g.proxyCommand(proxyExtra...))
	e.gopyk("add", "--kernel-name", e.spec, "--display-name", "gopyk over websocket",
		"--ssh-host-alias", "gpk-ws", "--ssh-config", cfg,
		"--remote-kernel-name", "python3", "--remote-python", python)
	return e, g
}

// cmdlinesWith lists processes whose argv contains s.
func cmdlinesWith(s string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		cl, err := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err != nil || !bytes.Contains(cl, []byte(s)) {
			continue
		}
		if stat, _ := os.ReadFile("/proc/" + d.Name() + "/stat"); bytes.Contains(stat, []byte(") Z ")) {
			continue
		}
		out = append(out, d.Name()+" "+strings.ReplaceAll(string(cl), "\x00", " "))
	}
	return out
}

// A kernel launched through `gopyk ws-proxy` (bearer token, TLS with a test
// CA) runs cells from jupyter-console; the token is on no argv and in no
// log line even at -vvv.
func TestWSJupyterConsole(t *testing.T) {
	e, g := newWSEnv(t, "Token")
	e.vars = append(e.vars, "GOPYK_WS_E2E=1")
	// The kernel's own connection, dialled in-process by gopyk-kernel and
	// gone with it (a master dials the same way, and outlives it).
	e.gopyk("edit", "--kernel-name", e.spec, "--master", "off")
	// -vvv on both the launcher and the proxy: the token must still not show.
	cf := filepath.Join(e.home, "kernel-ws.json")
	k := e.start(filepath.Join(binDir, "gopyk-kernel"), "-vvv", "--kernel", e.spec, "--connection-file", cf)
	e.waitReady(k, cf)

	if procs := cmdlinesWith(g.secret); len(procs) != 0 {
		t.Fatalf("the token is on a command line:\n%s", strings.Join(procs, "\n"))
	}
	// gopyk-kernel recognises its own ws-proxy ProxyCommand and dials the
	// WebSocket in-process: the log says so, and no proxy process runs.
	if !strings.Contains(k.output(), "ssh dial via WebSocket") {
		t.Fatalf("the kernel did not go through the WebSocket:\n%s", k.output())
	}
	if procs := cmdlinesWith("ws-proxy"); len(procs) != 0 {
		t.Fatalf("a ws-proxy process runs although gopyk-kernel dials in-process:\n%s", strings.Join(procs, "\n"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := e.cmd(ctx, python, "-m", "jupyter_console", "--existing", cf, "--simple-prompt", "--ZMQTerminalInteractiveShell.kernel_timeout=60")
	c.Stdin = strings.NewReader("import getpass\nprint('remote user:', getpass.getuser())\n6*7\n")
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("jupyter console: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "remote user: "+e.sshd.User) || !strings.Contains(string(out), "42") {
		t.Fatalf("jupyter console output does not show remote execution as %s:\n%s", e.sshd.User, out)
	}

	// Round trips through the WebSocket path, for the record (the benchmark
	// below compares transports without the kernel).
	cl := e.client(cf)
	var rtts []time.Duration
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		execute(t, cl, "1+1")
		rtts = append(rtts, time.Since(t0))
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	t.Logf("execute round trip over wss:// + websockify, median of 20: %v", rtts[10])

	k.signal(syscall.SIGTERM)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("gopyk-kernel exit %d after SIGTERM:\n%s", code, k.output())
	}
	wsWaitNoSessions(t, e.sshd, 15*time.Second)
	if strings.Contains(k.output(), g.secret) {
		t.Fatal("the token appears in gopyk-kernel's -vvv log")
	}
	waitFor(t, 10*time.Second, "ws-proxy to exit with the kernel", func() bool { return len(cmdlinesWith(g.url)) == 0 })
}

// The cookie-authenticated variant, driven the way JupyterLab drives kernels.
func TestWSJupyterServerCookie(t *testing.T) {
	e, g := newWSEnv(t, "Cookie")
	s := e.startServer()
	code, b := s.do("POST", "/api/kernels", map[string]any{"name": e.spec})
	if code != 201 {
		t.Fatalf("POST /api/kernels = %d: %s", code, b)
	}
	var k struct{ ID string }
	json.Unmarshal(b, &k)
	ws := s.channels(k.ID)
	r := ws.execute("import getpass; print(getpass.getuser(), 6*7)", 90*time.Second)
	if r.status != "ok" || !strings.Contains(r.text, e.sshd.User+" 42") {
		t.Fatalf("cell: %+v (want ok and '%s 42')", r, e.sshd.User)
	}
	if procs := cmdlinesWith(g.secret); len(procs) != 0 {
		t.Fatalf("the cookie is on a command line:\n%s", strings.Join(procs, "\n"))
	}
	if code, b := s.do("DELETE", "/api/kernels/"+k.ID, nil); code != 204 {
		t.Fatalf("DELETE = %d: %s", code, b)
	}
	wsWaitNoSessions(t, e.sshd, 20*time.Second)
	waitFor(t, 10*time.Second, "ws-proxy to exit with the kernel", func() bool { return len(cmdlinesWith(g.url)) == 0 })
}

// wsWaitNoSessions waits until nothing started through this sshd (supervisor,
// kernel, shell) is left. Unlike env.waitNoRemote it ignores other tests'
// sshds, which share the test user.
func wsWaitNoSessions(t *testing.T, sshd *testbed.SSHD, d time.Duration) {
	t.Helper()
	var left []int
	deadline := time.Now().Add(d)
	for {
		if left = sshd.SessionPIDs(); len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var desc []string
			for _, pid := range left {
				cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				desc = append(desc, fmt.Sprintf("%d %.120s", pid, strings.ReplaceAll(string(cl), "\x00", " ")))
			}
			t.Fatalf("remote processes still running after %v:\n%s", d, strings.Join(desc, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func runOpenSSH(t *testing.T, ctx context.Context, name string, args ...string) []byte {
	t.Helper()
	c := exec.CommandContext(ctx, name, args...)
	c.WaitDelay = 5 * time.Second
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// OpenSSH's own ssh and scp work through `gopyk ws-proxy` too.
func TestWSOpenSSHAndSCP(t *testing.T) {
	sshd := testbed.SSHDForTest(t, testbed.Options{})
	g := startGate(t, sshd, "Token")
	dir := t.TempDir()
	cfg := wsConfig(t, sshd, dir, g.proxyCommand())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	out := runOpenSSH(t, ctx, "ssh", "-F", cfg, "gpk-ws", "--", "echo over-ws $USER")
	if got := strings.TrimSpace(string(out)); got != "over-ws "+sshd.User {
		t.Fatalf("ssh over ws: %q", got)
	}
	// -o ProxyCommand on the command line, as users of websocat write it; -vvv
	// logs of the proxy go to ssh's stderr and must not show the token.
	out = runOpenSSH(t, ctx, "ssh", "-F", cfg, "-o", "ProxyCommand="+filepath.Join(binDir, "gopyk")+" -vvv ws-proxy --token-file "+g.cred+" --cacert "+g.ca+" "+g.url, "gpk-ws", "--", "echo via-o")
	if !strings.Contains(string(out), "via-o") || !strings.Contains(string(out), "websocket open") {
		t.Fatalf("ssh -o ProxyCommand=…: want the command's output and the proxy's debug log:\n%s", out)
	}
	if strings.Contains(string(out), g.secret) {
		t.Fatalf("the token appears in the -vvv log:\n%s", out)
	}

	// The same credential as a bearer header from --header-file, and from
	// --token-env: the variable reaches the proxy through ssh's environment.
	hf := filepath.Join(dir, "headers")
	os.WriteFile(hf, []byte("# JupyterHub accepts bearer too\nAuthorization: bearer "+g.secret+"\n"), 0o600)
	out = runOpenSSH(t, ctx, "ssh", "-F", cfg, "-o", "ProxyCommand="+filepath.Join(binDir, "gopyk")+" ws-proxy --header-file "+hf+" --cacert "+g.ca+" "+g.url, "gpk-ws", "--", "echo via-header-file")
	if !strings.Contains(string(out), "via-header-file") {
		t.Fatalf("ssh with --header-file: %s", out)
	}
	c := exec.CommandContext(ctx, "ssh", "-F", cfg, "-o", "ProxyCommand="+filepath.Join(binDir, "gopyk")+" ws-proxy --token-env GPK_HUB_TOKEN --cacert "+g.ca+" "+g.url, "gpk-ws", "--", "echo via-token-env")
	c.Env = append(os.Environ(), "GPK_HUB_TOKEN="+g.secret)
	if out, err := c.CombinedOutput(); err != nil || !strings.Contains(string(out), "via-token-env") {
		t.Fatalf("ssh with --token-env: %v\n%s", err, out)
	}

	payload := make([]byte, 1<<20)
	rand.Read(payload)
	up := filepath.Join(dir, "up.bin")
	if err := os.WriteFile(up, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	remote := fmt.Sprintf("/tmp/gpk-ws-scp-%d.bin", time.Now().UnixNano())
	t.Cleanup(func() { sshd.Exec(context.Background(), "rm -f "+remote) })
	runOpenSSH(t, ctx, "scp", "-F", cfg, "-q", up, "gpk-ws:"+remote)
	down := filepath.Join(dir, "down.bin")
	runOpenSSH(t, ctx, "scp", "-F", cfg, "-q", "gpk-ws:"+remote, down)
	got, err := os.ReadFile(down)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("scp round trip through the WebSocket changed the file (err %v, %d bytes)", err, len(got))
	}
	if procs := cmdlinesWith(g.url); len(procs) != 0 {
		t.Fatalf("ws-proxy processes left after ssh/scp exited:\n%s", strings.Join(procs, "\n"))
	}
}

// connectProxy is an HTTP CONNECT proxy that sends every tunnel to
// 127.0.0.1 on the requested port (so a name like hub.gpk.test needs no DNS)
// and records what it was asked for.
func connectProxy(t *testing.T) (addr string, asked chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	asked = make(chan string, 10)
	var conns []net.Conn
	var mu sync.Mutex
	track := func(c net.Conn) { mu.Lock(); conns = append(conns, c); mu.Unlock() }
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			track(c)
			go func() {
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil || req.Method != http.MethodConnect {
					c.Close()
					return
				}
				asked <- req.Host
				_, port, _ := net.SplitHostPort(req.Host)
				up, err := net.Dial("tcp", "127.0.0.1:"+port)
				if err != nil {
					io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
					c.Close()
					return
				}
				track(up)
				io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				go func() { io.Copy(up, c); up.Close() }()
				io.Copy(c, up)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String(), asked
}

// HTTPS_PROXY is honoured: the WebSocket goes through a CONNECT proxy.
func TestWSHTTPSProxy(t *testing.T) {
	sshd := testbed.SSHDForTest(t, testbed.Options{})
	g := startGate(t, sshd, "Token")
	proxyAddr, asked := connectProxy(t)
	hubURL := strings.Replace(g.url, "127.0.0.1", "hub.gpk.test", 1)
	cfg := wsConfig(t, sshd, t.TempDir(), filepath.Join(binDir, "gopyk")+" ws-proxy --token-file "+g.cred+" --cacert "+g.ca+" "+hubURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "ssh", "-F", cfg, "gpk-ws", "--", "echo proxied")
	c.Env = append(os.Environ(), "HTTPS_PROXY=http://"+proxyAddr, "NO_PROXY=", "no_proxy=")
	c.WaitDelay = 5 * time.Second
	out, err := c.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "proxied" {
		t.Fatalf("ssh through HTTPS_PROXY: %v\n%s", err, out)
	}
	select {
	case h := <-asked:
		if h != fmt.Sprintf("hub.gpk.test:%d", g.port) {
			t.Fatalf("proxy was asked for %q", h)
		}
	default:
		t.Fatal("the connection did not go through HTTPS_PROXY")
	}
}

// Each failure ends within the connect timeout with the plain-words message,
// a non-zero exit and no process left, whether run by hand or by ssh.
func TestWSErrors(t *testing.T) {
	sshd := testbed.SSHDForTest(t, testbed.Options{})
	g := startGate(t, sshd, "Token")
	dir := t.TempDir()
	wrong := filepath.Join(dir, "wrong-token")
	os.WriteFile(wrong, []byte("not-the-token\n"), 0o600)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/hub/login?next=%2Fuser%2Fgpktest%2Fsshd%2F", http.StatusFound)
	}))
	defer redirect.Close()
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html>JupyterHub</html>")
	}))
	defer page.Close()
	plainURL := strings.Replace(g.url, "wss://", "ws://", 1)

	// A gateway whose sshd is not running (jupyter-sshd-proxy without sshd).
	noSSHD := startGateTo(t, fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t)), "Token")

	const timeout = 5 * time.Second
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"wrong token", []string{"--token-file", wrong, "--cacert", g.ca, g.url}, "the token or cookie was rejected"},
		{"missing token", []string{"--cacert", g.ca, g.url}, "no credentials were sent"},
		{"no CA", []string{"--token-file", g.cred, g.url}, "--cacert"},
		{"ws to TLS-only", []string{"--token-file", g.cred, plainURL}, "use wss://"},
		{"plain HTTP page", []string{"--token-file", g.cred, strings.Replace(page.URL, "http://", "ws://", 1) + "/user/gpktest/sshd/"}, "not a WebSocket endpoint"},
		{"sshd not running", []string{"--token-file", noSSHD.cred, "--cacert", noSSHD.ca, noSSHD.url}, "the sshd behind the proxy is not running"},
		{"302 to login", []string{"--token-file", g.cred, strings.Replace(redirect.URL, "http://", "ws://", 1) + "/user/gpktest/sshd/"}, "the token or cookie was not accepted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-vvv", "ws-proxy", "--connect-timeout", timeout.String()}, tc.args...)
			c := exec.Command(filepath.Join(binDir, "gopyk"), args...)
			// stdin stays open, as under ssh: the failure must not wait for EOF.
			pr, pw, _ := os.Pipe()
			defer pw.Close()
			c.Stdin = pr
			var stderr bytes.Buffer
			c.Stderr = &stderr
			c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			t0 := time.Now()
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			pr.Close()
			done := make(chan error, 1)
			go func() { done <- c.Wait() }()
			t.Cleanup(func() { syscall.Kill(-c.Process.Pid, syscall.SIGKILL) })
			var err error
			select {
			case err = <-done:
			case <-time.After(timeout + 5*time.Second):
				syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				<-done
				t.Fatalf("gopyk ws-proxy still running after %v:\n%s", timeout+5*time.Second, stderr.String())
			}
			el := time.Since(t0)
			msg := stderr.String()
			if err == nil || c.ProcessState.ExitCode() != 1 {
				t.Fatalf("exit %v, want status 1:\n%s", err, msg)
			}
			if el > timeout+2*time.Second {
				t.Errorf("took %v, connect timeout is %v", el, timeout)
			}
			last := strings.TrimSpace(msg[strings.LastIndex(strings.TrimSpace(msg), "\n")+1:])
			if !strings.HasPrefix(last, "gopyk: error: ws-proxy ") || !strings.Contains(last, tc.want) {
				t.Fatalf("last stderr line %q, want a gopyk error saying %q", last, tc.want)
			}
			if strings.Contains(msg, g.secret) {
				t.Fatalf("the token appears on stderr:\n%s", msg)
			}
			if syscall.Kill(-c.Process.Pid, 0) != syscall.ESRCH {
				t.Fatal("processes of the ws-proxy group are still alive")
			}
			t.Logf("%v: %s", el.Round(time.Millisecond), last)
		})
	}

	// Through OpenSSH: the user sees the message, ssh fails, no proxy is left.
	cfg := wsConfig(t, sshd, dir, filepath.Join(binDir, "gopyk")+" ws-proxy --connect-timeout 5s --token-file "+wrong+" --cacert "+g.ca+" "+g.url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "ssh", "-F", cfg, "gpk-ws", "true")
	c.WaitDelay = 5 * time.Second
	out, err := c.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the token or cookie was rejected") {
		t.Fatalf("ssh with a wrong token: err %v, output lacks the reason:\n%s", err, out)
	}
	if procs := cmdlinesWith(wrong); len(procs) != 0 {
		t.Fatalf("ws-proxy left running after ssh failed:\n%s", strings.Join(procs, "\n"))
	}
}

// goGateway is a WebSocket-to-TCP bridge in Go (TLS with the gateway
// certificate in dir), to tell gopyk ws-proxy's share of the cost from
// websockify's.
func goGateway(b *testing.B, target, dir string) string {
	b.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "gw.crt"), filepath.Join(dir, "gw.key"))
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ws := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
		defer ws.Close()
		tcp, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer tcp.Close()
		go func() { io.Copy(tcp, ws); tcp.Close() }()
		io.Copy(ws, tcp)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	b.Cleanup(srv.Close)
	return strings.Replace(srv.URL, "https://", "wss://", 1) + "/sshd/"
}

// BenchmarkWSRoundTrip measures one small message there and back over an SSH
// session (`cat` on the remote side), directly and through gopyk ws-proxy +
// websockify (TLS): the per-message cost the WebSocket path adds.
//
//	go test ./e2e -run '^$' -bench WSRoundTrip -benchtime 2000x
func BenchmarkWSRoundTrip(b *testing.B) {
	sshd := testbed.SSHDForTest(b, testbed.Options{})
	g := startGate(b, sshd, "Token")
	wsCfg := wsConfig(b, sshd, b.TempDir(), g.proxyCommand())
	goURL := goGateway(b, sshd.Addr, g.dir)
	goCfg := wsConfig(b, sshd, b.TempDir(), filepath.Join(binDir, "gopyk")+" ws-proxy --cacert "+g.ca+" "+goURL)
	for _, tc := range []struct{ name, cfg, alias string }{
		{"ssh-direct", sshd.ConfigFile, sshd.Alias},
		{"ssh-over-websocket", wsCfg, "gpk-ws"},
		{"ssh-over-websocket-go-gateway", goCfg, "gpk-ws"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := exec.Command("ssh", "-F", tc.cfg, tc.alias, "--", "cat")
			in, _ := c.StdinPipe()
			out, _ := c.StdoutPipe()
			c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := c.Start(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				in.Close()
				syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				c.Wait()
			})
			msg := bytes.Repeat([]byte("x"), 63)
			msg = append(msg, '\n')
			buf := make([]byte, len(msg))
			roundTrip := func() {
				if _, err := in.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(out, buf); err != nil {
					b.Fatal(err)
				}
			}
			roundTrip() // connection set up outside the timing
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				roundTrip()
			}
		})
	}
}

// The in-process path a launcher can take instead of starting the proxy:
// ParseCommand on the ProxyCommand, Dial, and x/crypto/ssh over the stream,
// against the real sshd behind websockify, host key checked by known_hosts.
func TestWSInProcessDial(t *testing.T) {
	sshd := testbed.SSHDForTest(t, testbed.Options{})
	g := startGate(t, sshd, "Token")
	dir := t.TempDir()
	wsConfig(t, sshd, dir, g.proxyCommand())
	o, ok := wsproxy.ParseCommand(g.proxyCommand())
	if !ok {
		t.Fatalf("ParseCommand did not recognise %q", g.proxyCommand())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := wsproxy.Dial(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(sshd.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	hostKeys, err := knownhosts.New(filepath.Join(dir, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	cc, chans, reqs, err := ssh.NewClientConn(conn, "gpk-ws-hostkey:22", &ssh.ClientConfig{
		User: sshd.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hostKeys, Timeout: 20 * time.Second,
	})
	if err != nil {
		conn.Close()
		t.Fatalf("ssh over the in-process WebSocket: %v", err)
	}
	client := ssh.NewClient(cc, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Output("echo in-process $USER")
	if err != nil || strings.TrimSpace(string(out)) != "in-process "+sshd.User {
		t.Fatalf("remote command: %q %v", out, err)
	}
}
