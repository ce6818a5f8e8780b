//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/provisioner"
	"github.com/gopyk/gopyk/provisioner/remote"
	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wire"
)

// alive fails the test if the launcher has exited.
func alive(t *testing.T, p *proc) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("gopyk-kernel exited unexpectedly: %v\n%s", p.err, p.output())
	default:
	}
}

// interruptSleep starts a long cell, waits until it runs, and has interrupt
// stop it; the cell must end in KeyboardInterrupt. It returns the time from
// the first interrupt to the cell's end.
func interruptSleep(t *testing.T, c *wire.Client, interrupt func()) time.Duration {
	t.Helper()
	busy := make(chan struct{})
	var once sync.Once
	res := make(chan *wire.ExecResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// The marker proves the cell's code runs: "busy" comes before that.
		// Without stop_on_error false, ipykernel aborts a request that
		// reaches it while it winds the interrupted cell down (a reply's
		// round trip on a loaded machine): the caller's next cell.
		r, err := c.Execute(ctx, "print('sleeping', flush=True); import time; time.sleep(100)", wire.ContinueOnError(), wire.OnIOPub(func(m *wire.Message) {
			if m.Header.MsgType == "stream" && strings.Contains(m.Str("text"), "sleeping") {
				once.Do(func() { close(busy) })
			}
		}))
		if err != nil {
			r = &wire.ExecResult{Status: "client error: " + err.Error()}
		}
		res <- r
	}()
	select {
	case <-busy:
	case <-time.After(30 * time.Second):
		t.Fatal("long cell never started")
	}
	// A SIGINT that lands in ipykernel's output flushing (between the print
	// and the sleep) is swallowed there; like a user, try again.
	t0 := time.Now()
	for tries := 0; ; tries++ {
		interrupt()
		select {
		case r := <-res:
			if r.Ename != "KeyboardInterrupt" {
				t.Fatalf("interrupted cell: status %q ename %q, want KeyboardInterrupt", r.Status, r.Ename)
			}
			return time.Since(t0)
		case <-time.After(2 * time.Second):
			if tries == 4 {
				t.Fatal("five interrupts did not stop the cell")
			}
		}
	}
}

// The signal table of a standalone launcher: INT interrupts, USR1 restarts on
// the same ports and key, TERM shuts the remote kernel down.
func TestSignalsInterruptRestartTerm(t *testing.T) {
	e := newEnv(t)
	k, cf := e.launch()
	before, _ := os.ReadFile(cf)
	c := e.client(cf)
	if r := execute(t, c, "x = 5"); r.Status != "ok" {
		t.Fatalf("x = 5: %+v", r)
	}

	interruptSleep(t, c, func() { k.signal(syscall.SIGINT) })
	alive(t, k)

	c.Close()
	k.signal(syscall.SIGUSR1)
	waitFor(t, 60*time.Second, "the launcher to report the restart", func() bool {
		return strings.Contains(k.output(), "remote kernel restarted")
	})
	c2 := e.client(cf)
	if r := execute(t, c2, "'x' in dir()"); r.Result != "False" {
		t.Fatalf("after SIGUSR1 restart: %q, want False (fresh kernel)", r.Result)
	}
	if after, _ := os.ReadFile(cf); !bytes.Equal(before, after) {
		t.Fatalf("restart changed the connection file:\n%s\n->\n%s", before, after)
	}
	alive(t, k)

	c2.Close()
	k.signal(syscall.SIGTERM)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, k.output())
	}
	e.waitNoRemote(15 * time.Second)
}

func TestSIGHUPShutsDown(t *testing.T) {
	e := newEnv(t)
	k, _ := e.launch()
	k.signal(syscall.SIGHUP)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGHUP:\n%s", code, k.output())
	}
	e.waitNoRemote(15 * time.Second)
}

// Persistent: QUIT leaves the kernel (and its running cell) alone, --existing
// re-attaches with the state intact, TERM on a persistent kernel leaves it,
// USR2 shuts it down anyway.
func TestPersistentLeaveAndExisting(t *testing.T) {
	e := newEnv(t)
	pf := filepath.Join(e.home, "persist.json")
	k, cf := e.launch("--persistent-file", pf)
	c := e.client(cf)
	if r := execute(t, c, "x = 42"); r.Status != "ok" {
		t.Fatalf("x = 42: %+v", r)
	}
	// A cell that is running when we leave must not be interrupted (sshpyk B5).
	id := c.NewMessage("execute_request", map[string]any{"code": "import time; time.sleep(3); y = 'finished'",
		"silent": false, "store_history": true, "user_expressions": map[string]any{}, "allow_stdin": false, "stop_on_error": true})
	sendCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	go c.Request(sendCtx, "shell", id)
	time.Sleep(500 * time.Millisecond) // let the cell start before leaving; nothing to wait on that the test can see
	k.signal(syscall.SIGQUIT)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGQUIT:\n%s", code, k.output())
	}
	cancel()
	c.Close()
	if len(e.remoteKernelProcs()) == 0 {
		t.Fatal("SIGQUIT shut the remote kernel down; it must keep running")
	}
	// Leaving ends every relayed connection: the kept kernel holds none.
	var st provisioner.State
	if b, err := os.ReadFile(pf); err != nil || json.Unmarshal(b, &st) != nil {
		t.Fatalf("persistence file: %v", err)
	}
	waitFor(t, 10*time.Second, "no relayed streams left after leaving", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := remote.NewControl(remote.UnixDialer(st.Control)).Status(ctx)
		return err == nil && r.Streams == 0
	})

	cf2 := filepath.Join(e.home, "kernel-attached.json")
	k2 := e.start(filepath.Join(binDir, "gopyk-kernel"), "--existing", pf, "--connection-file", cf2)
	e.waitReady(k2, cf2)
	c2 := e.client(cf2)
	if r := execute(t, c2, "x"); r.Result != "42" {
		t.Fatalf("after re-attach x = %q, want 42", r.Result)
	}
	waitFor(t, 15*time.Second, "the left cell to finish uninterrupted", func() bool {
		r := execute(t, c2, "globals().get('y')")
		return r.Result == "'finished'"
	})

	k2.signal(syscall.SIGTERM) // persistent: TERM leaves it running
	if code := k2.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, k2.output())
	}
	c2.Close()
	if len(e.remoteKernelProcs()) == 0 {
		t.Fatal("SIGTERM shut a persistent kernel down")
	}

	k3 := e.start(filepath.Join(binDir, "gopyk-kernel"), "--existing", pf, "--connection-file", filepath.Join(e.home, "kernel-3.json"))
	e.waitReady(k3, filepath.Join(e.home, "kernel-3.json"))
	k3.signal(syscall.SIGUSR2)
	if code := k3.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGUSR2:\n%s", code, k3.output())
	}
	e.waitNoRemote(15 * time.Second)
	if _, err := os.Stat(pf); !os.IsNotExist(err) {
		t.Fatalf("persistence file still there after the kernel shut down (err %v)", err)
	}
}

// Ctrl+D on a real terminal opens the menu; Enter picks the default, shutdown.
func TestCtrlDMenuShutdown(t *testing.T) {
	e := newEnv(t)
	m, s := openPTY(t)
	cf := filepath.Join(e.home, "kernel-tty.json")
	c := e.cmd(context.Background(), filepath.Join(binDir, "gopyk-kernel"), "--kernel", e.spec, "--connection-file", cf)
	c.Stdin, c.Stdout, c.Stderr = s, s, s
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	done := make(chan struct{})
	var screen syncBuf
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			screen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	go func() { c.Wait(); close(done) }()
	t.Cleanup(func() { c.Process.Kill(); <-done })

	waitFor(t, 60*time.Second, "the kernel to be ready", func() bool { return strings.Contains(screen.String(), "ready") })
	m.Write([]byte{4}) // Ctrl+D at the start of a line: EOF for the launcher
	waitFor(t, 10*time.Second, "the Ctrl+D menu", func() bool { return strings.Contains(screen.String(), "Action? [Y/i/l/r/n]") })
	m.Write([]byte("\n"))
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit after choosing shutdown; screen:\n%s", screen.String())
	}
	if code := c.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d after menu shutdown; screen:\n%s", code, screen.String())
	}
	e.waitNoRemote(15 * time.Second)
}

// The key never appears on a command line on either side nor in a -vvv log,
// and everything the remote side writes is private.
func TestKeyStaysSecret(t *testing.T) {
	e := newEnv(t)
	k, cf := e.launch("-vvv")
	ci, err := wire.ReadConnInfo(cf)
	if err != nil {
		t.Fatal(err)
	}
	c := e.client(cf)
	execute(t, c, "1+1")
	interruptSleep(t, c, func() { k.signal(syscall.SIGINT) })

	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		cl, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && bytes.Contains(cl, []byte(ci.Key)) {
			t.Errorf("the key is on the command line of pid %s: %q", d.Name(), cl)
		}
	}
	gopykDir := filepath.Join(e.sshd.Home, ".gopyk")
	filepath.WalkDir(gopykDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		mode := info.Mode()
		switch {
		case mode.IsDir() && mode.Perm() != 0o700:
			t.Errorf("remote dir %s is %v, want 0700", path, mode.Perm())
		case mode.IsRegular() && mode.Perm()&0o077 != 0:
			t.Errorf("remote file %s is %v, want no access for others", path, mode.Perm())
		}
		return nil
	})
	c.Close()
	k.signal(syscall.SIGTERM)
	k.waitExit(t, 30*time.Second)
	if out := k.output(); strings.Contains(out, ci.Key) {
		t.Fatalf("the key appears in the -vvv log:\n%s", out)
	} else if !strings.Contains(out, "DEBUG") {
		t.Fatalf("-vvv produced no debug lines, so this test proves nothing:\n%s", out)
	}
	e.waitNoRemote(15 * time.Second)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, s, err := testbed.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}
