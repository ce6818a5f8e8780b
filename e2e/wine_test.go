//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wine"
)

// TestWine runs the Windows gopyk.exe under Debian's wine: `gopyk.exe add`
// writes a spec Jupyter on Windows can start, and Linux OpenSSH reaches the
// test sshd through `wine gopyk.exe ws-proxy` and websockify, as Windows
// OpenSSH's ssh.exe does with the same ProxyCommand.
func TestWine(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../cmd/gopyk", "../cmd/gopyk-kernel")
	build.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build gopyk.exe: %v\n%s", err, out)
	}
	gopykExe := filepath.Join(bin, "gopyk.exe")
	dir, err := os.MkdirTemp("", "gopyk-wine-")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(dir)
	t0 := time.Now()
	p, err := wine.New(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wine prefix ready in %v", time.Since(t0).Round(time.Millisecond))
	t.Cleanup(func() { p.Close() })

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
