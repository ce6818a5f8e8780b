package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Netns is a pair of network namespaces, "local" and "remote", joined by a
// veth pair: a test host whose link can be taken down with ip link, which
// loopback can't do. Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
type Netns struct {
	Local, Remote     string // namespace names (ip netns)
	LocalIf, RemoteIf string // the veth ends inside Local and Remote
	LocalIP, RemoteIP string // addresses on the veth ends (/24)

	closeOnce sync.Once
}

var netnsSeq atomic.Int32

// NewNetns creates a fresh namespace pair with unique names (gpk-<pid>-<n>-l/r)
// and addresses in 10.231.<n>.0/24; Close deletes it.
func NewNetns(ctx context.Context) (*Netns, error) {
	n := int(netnsSeq.Add(1))
	base := fmt.Sprintf("gpk-%d-%d", os.Getpid(), n)
	// Interface names are limited to 15 bytes.
	ifBase := fmt.Sprintf("g%d%c", os.Getpid()%1000000, 'a'+rune(n%26))
	ns := &Netns{
		Local: base + "-l", Remote: base + "-r",
		LocalIf: ifBase + "l", RemoteIf: ifBase + "r",
		LocalIP:  fmt.Sprintf("10.231.%d.1", n%250),
		RemoteIP: fmt.Sprintf("10.231.%d.2", n%250),
	}
	steps := [][]string{
		{"netns", "add", ns.Local},
		{"netns", "add", ns.Remote},
		{"link", "add", ns.LocalIf, "netns", ns.Local, "type", "veth", "peer", "name", ns.RemoteIf, "netns", ns.Remote},
		{"-n", ns.Local, "addr", "add", ns.LocalIP + "/24", "dev", ns.LocalIf},
		{"-n", ns.Remote, "addr", "add", ns.RemoteIP + "/24", "dev", ns.RemoteIf},
		{"-n", ns.Local, "link", "set", "lo", "up"},
		{"-n", ns.Remote, "link", "set", "lo", "up"},
		{"-n", ns.Local, "link", "set", ns.LocalIf, "up"},
		{"-n", ns.Remote, "link", "set", ns.RemoteIf, "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			ns.Close()
			return nil, err
		}
	}
	return ns, nil
}

// NetnsForTest creates a namespace pair that t.Cleanup deletes. It skips the
// test, saying why, only when namespaces cannot be created here (not root, or
// a kernel/container without them).
func NetnsForTest(t testing.TB) *Netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespace tests need root (ip netns add); CI runs them as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := NewNetns(ctx)
	if err != nil {
		if strings.Contains(err.Error(), "ip netns add") {
			t.Skipf("network namespaces cannot be created on this machine: %v", err)
		}
		t.Fatalf("set up network namespaces: %v", err)
	}
	t.Cleanup(ns.Close)
	return ns
}

func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testbed: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// LinkDown takes the local end of the veth down: packets stop both ways and
// the route disappears, as when a laptop loses Wi-Fi.
func (n *Netns) LinkDown(ctx context.Context) error {
	return ip(ctx, "-n", n.Local, "link", "set", n.LocalIf, "down")
}

// LinkUp brings the local end back.
func (n *Netns) LinkUp(ctx context.Context) error {
	return ip(ctx, "-n", n.Local, "link", "set", n.LocalIf, "up")
}

// Command runs name inside namespace ns (n.Local or n.Remote) with ip netns
// exec, which execs the program: the process id is the program's own.
func (n *Netns) Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Dial opens a connection from inside namespace ns. Only the socket's
// creation needs the namespace; the returned conn works from any goroutine.
func (n *Netns) Dial(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := inNetns(ns, func() error {
		var err error
		d := net.Dialer{}
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// inNetns runs f on an OS thread switched into network namespace ns. Go's net
// package creates sockets on the calling thread, so sockets f makes belong to
// ns. If the thread can't be switched back it stays locked and dies with the
// goroutine rather than leak the namespace to other goroutines.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("testbed: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("testbed: namespace %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("testbed: enter namespace %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// Close deletes both namespaces (the veth pair goes with them). Processes
// still running inside keep them alive until they exit: kill those first.
func (n *Netns) Close() {
	n.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var errs []error
		for _, ns := range []string{n.Local, n.Remote} {
			if _, err := os.Stat("/run/netns/" + ns); err == nil {
				errs = append(errs, ip(ctx, "netns", "del", ns))
			}
		}
		if err := errors.Join(errs...); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	})
}

type dialFunc func(addr string, timeout time.Duration) (net.Conn, error)

// command is sshd with args, inside the remote namespace when there is
// one, and in a mount namespace of its own when it has mounts.
func (s *SSHD) command(args ...string) *exec.Cmd {
	prog := s.program
	if s.mounts != "" {
		// unshare and sh exec: the process is sshd's own.
		args = append([]string{"--mount", "--propagation", "private", "--", "sh", "-ec", s.mounts + ` && exec "$0" "$@"`, prog}, args...)
		prog = "unshare"
	}
	if s.netns == nil {
		return exec.Command(prog, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", s.netns.Remote, prog}, args...)...)
}

// dial reaches sshd the way a client in the local namespace would.
func (s *SSHD) dial(addr string, timeout time.Duration) (net.Conn, error) {
	if s.netns == nil {
		return net.DialTimeout("tcp", addr, timeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.netns.Dial(ctx, s.netns.Local, "tcp", addr)
}

// SessionPIDsIn is SSHD.SessionPIDs for the sshd whose Dir is dir, for a
// process that has only the directory (a test re-executed in a namespace).
func SessionPIDsIn(dir string) []int {
	var out []int
	for _, p := range tagged("GOPYK_TESTBED=" + dir) {
		if alive(p) {
			out = append(out, p)
		}
	}
	return out
}
