//go:build unix

package wire

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// kernel is a real Debian ipykernel started for one test.
type kernel struct {
	ci     ConnInfo
	file   string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has been reaped
	out    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newConnInfo returns connection info for a kernel that is not started yet.
func newConnInfo(t *testing.T, transport string) ConnInfo {
	t.Helper()
	ci := ConnInfo{Key: NewKey(), Transport: transport, SignatureScheme: SchemeHMACSHA256, KernelName: "python3"}
	if transport == "ipc" {
		// Short path: unix socket paths are limited to 108 bytes.
		dir, err := os.MkdirTemp("", "gpkw")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		ci.IP = filepath.Join(dir, "k")
		ci.SetPorts([]int{1, 2, 3, 4, 5})
		return ci
	}
	ports, err := FreeTCPPorts(5)
	if err != nil {
		t.Fatal(err)
	}
	ci.IP = "127.0.0.1"
	ci.SetPorts(ports)
	return ci
}

// startKernel launches ipykernel on ci and kills it (by PID) at cleanup.
func startKernel(t testing.TB, ci ConnInfo) *kernel {
	t.Helper()
	file := filepath.Join(t.TempDir(), "kernel.json")
	if err := WriteConnInfo(file, ci); err != nil {
		t.Fatal(err)
	}
	k := &kernel{ci: ci, file: file, exited: make(chan struct{}), out: &syncBuffer{}}
	k.cmd = exec.Command("/usr/bin/python3", "-m", "ipykernel_launcher", "-f", file)
	k.cmd.Env = append(os.Environ(), "PYDEVD_DISABLE_FILE_VALIDATION=1")
	k.cmd.Stdout, k.cmd.Stderr = k.out, k.out
	// ipykernel answers interrupt_request with killpg(SIGINT) on its own
	// group; in ours it would interrupt the test binary.
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := k.cmd.Start(); err != nil {
		t.Fatalf("start ipykernel: %v", err)
	}
	go func() {
		_ = k.cmd.Wait()
		close(k.exited)
	}()
	t.Cleanup(func() {
		_ = k.cmd.Process.Kill()
		select {
		case <-k.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("ipykernel pid %d not reaped 10 s after SIGKILL", k.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("ipykernel output:\n%s", k.out.String())
		}
	})
	return k
}
