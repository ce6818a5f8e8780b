//go:build linux

package sshconf

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gopyk/gopyk/testbed"
)

// flakyFront hangs up on the first drop connections, as sshd does past
// MaxStartups, and passes the rest through to target.
func flakyFront(t *testing.T, target string, drop int32) (port int, seen *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seen = new(atomic.Int32)
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	keep := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if seen.Add(1) <= drop {
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			keep(c)
			keep(u)
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(u, c); u.Close() }()
			go func() { defer wg.Done(); io.Copy(c, u); c.Close() }()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, seen
}

func TestDialRetriesHandshakeHangup(t *testing.T) {
	s := testbed.SSHDForTest(t, testbed.Options{})
	port, seen := flakyFront(t, s.Addr, 2)
	st := tbSettings(s)
	st.Port = port
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte("[127.0.0.1]:"+strconv.Itoa(port)+" "+s.HostKeyPub+"\n"), 0o600)
	st.UserKnownHostsFiles = []string{kh}
	c := mustDial(t, Route{st})
	c.Close()
	if n := seen.Load(); n != 3 {
		t.Fatalf("%d connections, want 2 refused and 1 that worked", n)
	}
}

func TestDialGivesUpOnHandshakeHangup(t *testing.T) {
	s := testbed.SSHDForTest(t, testbed.Options{})
	port, seen := flakyFront(t, s.Addr, 1000)
	st := tbSettings(s)
	st.Port = port
	_, err := Dial(testCtx(t), Route{st}, DialOptions{})
	if !errors.Is(err, ErrHandshakeClosed) {
		t.Fatalf("err = %v, want ErrHandshakeClosed", err)
	}
	if n := seen.Load(); n != 4 {
		t.Fatalf("%d attempts, want 4", n)
	}
}
