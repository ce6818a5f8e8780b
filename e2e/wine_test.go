//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wine"
	"github.com/gopyk/gopyk/wire"
)

// wineBed builds the Windows gopyk.exe and gopyk-kernel.exe (and the
// winjupyter stand-in) into a temporary dir and makes a wine prefix.
func wineBed(t *testing.T) (*wine.Prefix, string) {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../cmd/gopyk", "../cmd/gopyk-kernel", "./testdata/winjupyter")
	build.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the Windows binaries: %v\n%s", err, out)
	}
	dir, err := os.MkdirTemp("", "gopyk-wine-")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(dir) // wine.New makes it
	t0 := time.Now()
	p, err := wine.New(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wine prefix ready in %v", time.Since(t0).Round(time.Millisecond))
	t.Cleanup(func() { p.Close() })
	return p, bin
}

// TestWine runs the Windows gopyk.exe under Debian's wine: `gopyk.exe add`
// writes a spec Jupyter on Windows can start, and Linux OpenSSH reaches the
// test sshd through `wine gopyk.exe ws-proxy` and websockify, as Windows
// OpenSSH's ssh.exe does with the same ProxyCommand.
func TestWine(t *testing.T) {
	p, bin := wineBed(t)
	gopykExe := filepath.Join(bin, "gopyk.exe")

	t.Run("add", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := p.Command(ctx, gopykExe, "add", "--kernel-name", "gpk_wine", "--ssh-host-alias", "somehost",
			"--remote-kernel-name", "python3").CombinedOutput()
		if err != nil {
			t.Fatalf("gopyk.exe add: %v\n%s", err, out)
		}
		// %APPDATA% in the prefix is C:\users\<user>\AppData\Roaming.
		specs, _ := filepath.Glob(filepath.Join(p.Dir, "drive_c", "users", "*", "AppData", "Roaming", "jupyter", "kernels", "gpk_wine", "kernel.json"))
		if len(specs) != 1 || !strings.Contains(string(out), `AppData\Roaming\jupyter\kernels\gpk_wine`) {
			t.Fatalf("kernel.json not in %%APPDATA%%\\jupyter\\kernels: %v\n%s", specs, out)
		}
		b, _ := os.ReadFile(specs[0])
		var spec struct {
			Argv          []string `json:"argv"`
			InterruptMode string   `json:"interrupt_mode"`
		}
		if err := json.Unmarshal(b, &spec); err != nil {
			t.Fatal(err)
		}
		want := wine.WindowsPath(filepath.Join(bin, "gopyk-kernel.exe"))
		if len(spec.Argv) == 0 || !strings.EqualFold(spec.Argv[0], want) || spec.InterruptMode != "signal" {
			t.Fatalf("argv %q, interrupt_mode %q; want argv[0] %s and signal (JPY_INTERRUPT_EVENT)", spec.Argv, spec.InterruptMode, want)
		}
		if !strings.Contains(strings.Join(spec.Argv, " "), "{connection_file}") {
			t.Errorf("argv %q has no {connection_file}", spec.Argv)
		}
	})

	sshd := testbed.SSHDForTest(t, testbed.Options{})
	g := startGate(t, sshd, "Token")
	proxyArgs := []string{"ws-proxy", "--token-file", wine.WindowsPath(g.cred), "--cacert", wine.WindowsPath(g.ca), g.url}

	t.Run("ssh through ws-proxy", func(t *testing.T) {
		cfg := wsConfig(t, sshd, t.TempDir(), p.CommandLine(gopykExe, proxyArgs...))
		ssh := func(stdin io.Reader, remote string) ([]byte, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c := exec.CommandContext(ctx, "ssh", "-F", cfg, "gpk-ws", remote)
			c.Stdin = stdin
			var stderr bytes.Buffer
			c.Stderr = &stderr
			out, err := c.Output()
			if err != nil {
				t.Logf("ssh stderr:\n%s", stderr.String())
			}
			return out, err
		}
		out, err := ssh(nil, "echo ok")
		if err != nil || string(out) != "ok\n" {
			t.Fatalf("ssh gpk-ws 'echo ok' = %q, %v", out, err)
		}
		// 10 MB of random bytes there and back, and its hash on the far side.
		data := make([]byte, 10<<20)
		rand.Read(data)
		sum := sha256.Sum256(data)
		t0 := time.Now()
		out, err = ssh(bytes.NewReader(data), "cat")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("10 MB through ws-proxy came back as %d bytes that differ", len(out))
		}
		out, err = ssh(bytes.NewReader(data), "sha256sum")
		if err != nil || !strings.HasPrefix(string(out), hex.EncodeToString(sum[:])) {
			t.Fatalf("sha256sum on the far side = %q, %v; want %x", out, err, sum)
		}
		t.Logf("10 MiB each way through wine gopyk.exe ws-proxy in %v", time.Since(t0).Round(time.Millisecond))
		waitFor(t, 15*time.Second, "gopyk.exe ws-proxy to exit with ssh", func() bool { return len(cmdlinesWith(g.url)) == 0 })
	})

	// ssh.exe ends a ProxyCommand by closing its stdin: ws-proxy closes the
	// WebSocket and exits 0.
	t.Run("stdin closed", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := p.Command(ctx, gopykExe, proxyArgs...)
		in, _ := c.StdinPipe()
		out, _ := c.StdoutPipe()
		var stderr bytes.Buffer
		c.Stderr = &stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		banner := make([]byte, 8)
		if _, err := io.ReadFull(out, banner); err != nil || string(banner) != "SSH-2.0-" {
			t.Fatalf("read %q, %v; want sshd's banner\n%s", banner, err, stderr.String())
		}
		// What the check after ssh above looks for (wine keeps the argv).
		if len(cmdlinesWith(g.url)) == 0 {
			t.Error("the running gopyk.exe ws-proxy is not found by its URL")
		}
		in.Close()
		go io.Copy(io.Discard, out)
		if err := c.Wait(); err != nil {
			t.Fatalf("ws-proxy after its stdin closed: %v\n%s", err, stderr.String())
		}
	})

	// A refused credential: one line on stderr, which ssh.exe shows, and a
	// non-zero exit.
	t.Run("error on stderr", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad-token")
		os.WriteFile(bad, []byte("wrong\n"), 0o600)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := p.Command(ctx, gopykExe, "ws-proxy", "--token-file", wine.WindowsPath(bad), "--cacert", wine.WindowsPath(g.ca), g.url)
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		msg := strings.TrimSpace(stderr.String())
		if err == nil || stdout.Len() != 0 || !strings.Contains(msg, "rejected") || strings.Count(msg, "\n") != 0 {
			t.Fatalf("exit %v, stdout %q, stderr %q; want a failure and one line saying the token was rejected", err, stdout.String(), msg)
		}
		t.Logf("stderr: %s", msg)
	})
}

// TestWineJupyterHandles is gopyk-kernel.exe under wine as Jupyter on Windows
// starts it (winjupyter: a real interrupt event and a real handle on the
// parent process), with a real ipykernel behind the test sshd: each set of
// the event interrupts the running cell once, and the parent's exit shuts
// the remote kernel down.
func TestWineJupyterHandles(t *testing.T) {
	p, bin := wineBed(t)
	sshd := testbed.SSHDForTest(t, testbed.Options{})
	dir := t.TempDir()
	// The ssh config as a Windows user writes it: Windows paths.
	cfg := filepath.Join(dir, "ssh_config")
	block := sshd.ConfigBlockAt("gpk-win", sshd.Port, wine.WindowsPath(sshd.KnownHosts))
	block = strings.Replace(block, "IdentityFile "+sshd.ClientKey, "IdentityFile "+wine.WindowsPath(sshd.ClientKey), 1)
	if err := os.WriteFile(cfg, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := p.Command(ctx, filepath.Join(bin, "gopyk.exe"), "add", "--kernel-name", "gpk_win", "--ssh-host-alias", "gpk-win",
		"--ssh-config", wine.WindowsPath(cfg), "--remote-kernel-name", "python3", "--remote-python", python).CombinedOutput(); err != nil {
		t.Fatalf("gopyk.exe add: %v\n%s", err, out)
	}

	cf, logf := filepath.Join(dir, "kernel-win.json"), filepath.Join(dir, "kernel.log")
	jup := p.Command(ctx, filepath.Join(bin, "winjupyter.exe"), wine.WindowsPath(logf),
		filepath.Join(bin, "gopyk-kernel.exe"), "--kernel", "gpk_win", "--connection-file", wine.WindowsPath(cf))
	stdin, _ := jup.StdinPipe()
	stdout, _ := jup.StdoutPipe()
	jup.Stderr = os.Stderr
	if err := jup.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	defer func() {
		stdin.Close()
		jup.Wait()
	}()
	if l := <-lines; !strings.HasPrefix(l, "started ") {
		t.Fatalf("winjupyter said %q, want started", l)
	}
	log := func() string { b, _ := os.ReadFile(logf); return string(b) }
	waitFor(t, 90*time.Second, "gopyk-kernel.exe ready", func() bool {
		if l := log(); strings.Contains(l, " ERROR]") || strings.Contains(l, "gopyk-kernel: error") {
			t.Fatalf("gopyk-kernel.exe:\n%s", log())
		}
		return strings.Contains(log(), "kernel ready")
	})

	ci, err := wire.ReadConnInfo(cf)
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, time.Minute)
	defer dcancel()
	c, err := wire.Dial(dctx, ci)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitReady(dctx); err != nil {
		t.Fatal(err)
	}
	if r := execute(t, c, "6*7"); r.Result != "42" {
		t.Fatalf("6*7 = %+v", r)
	}
	sets := 0
	set := func() {
		sets++
		fmt.Fprintln(stdin, "interrupt")
		if l := <-lines; l != "set" {
			t.Fatalf("winjupyter said %q, want set", l)
		}
	}
	for i := 0; i < 2; i++ {
		interruptSleep(t, c, set)
	}
	waitFor(t, 10*time.Second, "one interrupt logged per set", func() bool {
		return strings.Count(log(), "kernel interrupted by=JPY_INTERRUPT_EVENT") == sets
	})
	if r := execute(t, c, "6*7"); r.Result != "42" {
		t.Fatalf("after the interrupts 6*7 = %+v", r)
	}

	// Jupyter goes away: gopyk-kernel.exe shuts the remote kernel down.
	fmt.Fprintln(stdin, "exit")
	waitFor(t, 60*time.Second, "gopyk-kernel.exe to shut down after its parent", func() bool {
		return strings.Contains(log(), "kernel shut down") && len(cmdlinesWith(wine.WindowsPath(cf))) == 0
	})
	if !strings.Contains(log(), "JPY_PARENT_PID) is gone") {
		t.Errorf("the shutdown does not name the parent:\n%s", log())
	}
	wsWaitNoSessions(t, sshd, 30*time.Second)
	t.Logf("%d interrupts through JPY_INTERRUPT_EVENT", sets)
}
