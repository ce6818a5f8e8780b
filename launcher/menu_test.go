//go:build linux

package launcher

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopyk/gopyk/testbed"
)

func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, s, err := testbed.OpenPTY()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// ttyChild runs gopyk-kernel with a terminal on stdin and stderr.
type ttyChild struct {
	*child
	master *os.File
	screen syncBuffer // what gopyk-kernel wrote to the terminal (and its echo)
}

func startTTYChild(t *testing.T, rt string, args ...string) *ttyChild {
	t.Helper()
	m, s := openPTY(t)
	tc := &ttyChild{master: m}
	tc.child = startChild(t, childOpts{rt: rt, stdin: s, stderr: s, ctty: true}, args...)
	s.Close() // the child holds its own copy
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			tc.screen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { m.Close(); <-done })
	tc.waitScreen("kernel ready", 1)
	tc.waitScreen("press Ctrl+D for a menu", 1)
	return tc
}

func (c *ttyChild) waitScreen(what string, count int) {
	c.t.Helper()
	waitFor(c.t, fmt.Sprintf("%d× %q on the terminal", count, what), c.patience, func() bool {
		return strings.Count(c.screen.String(), what) >= count
	})
}

func (c *ttyChild) typeIn(s string) {
	c.t.Helper()
	if _, err := c.master.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// menu presses Ctrl+D, waits for the n-th prompt and answers it.
func (c *ttyChild) menu(n int, answer string) {
	c.t.Helper()
	c.typeIn("\x04")
	c.waitScreen(menuPrompt, n)
	if !strings.Contains(c.screen.String(), strings.TrimSpace(menuText)) {
		c.t.Fatalf("menu text missing:\n%s", c.screen.String())
	}
	c.typeIn(answer + "\n")
}

func TestCtrlDMenuActions(t *testing.T) {
	t.Parallel()
	rt := t.TempDir()
	c := startTTYChild(t, rt, "-k", "remote")
	c.waitOut("launch persistent=false interactive=true")
	// The signal table is shown at INFO on a terminal.
	if !strings.Contains(c.screen.String(), "INFO] send SIGQUIT to leave") {
		t.Errorf("no signal table:\n%s", c.screen.String())
	}
	c.menu(1, "i")
	c.waitOut("call: interrupt")
	c.menu(2, "n")
	c.waitScreen("No action taken, resuming", 1)
	c.menu(3, "what")
	c.waitScreen(`Unknown answer "what"`, 1)
	c.typeIn("typed input is ignored\n")
	c.menu(4, "r")
	c.waitOut("call: restart")
	c.menu(5, "l")
	if code := c.wait(); code != 0 {
		t.Errorf("exit %d, want 0; terminal:\n%s", code, c.screen.String())
	}
	if got := strings.Join(c.calls(), " "); got != "launch interrupt restart leave" {
		t.Errorf("calls %q", got)
	}
	if pfs, _ := filepath.Glob(filepath.Join(rt, "gopyk-kernel-*.json")); len(pfs) != 1 {
		t.Errorf("leave did not write a persistence file: %v", pfs)
	}
}

// The default answer shuts the kernel down, even a persistent one.
func TestCtrlDMenuShutdown(t *testing.T) {
	for _, answer := range []string{"", "Y", "y"} {
		t.Run("answer "+answer, func(t *testing.T) {
			t.Parallel()
			rt := t.TempDir()
			c := startTTYChild(t, rt, "-k", "remote", "--persistent")
			c.menu(1, answer)
			if code := c.wait(); code != 0 {
				t.Errorf("exit %d; terminal:\n%s", code, c.screen.String())
			}
			if got := strings.Join(c.calls(), " "); got != "launch shutdown" {
				t.Errorf("calls %q", got)
			}
			if pfs, _ := filepath.Glob(filepath.Join(rt, "gopyk-kernel-*.json")); len(pfs) != 0 {
				t.Errorf("persistence file kept: %v", pfs)
			}
		})
	}
}
