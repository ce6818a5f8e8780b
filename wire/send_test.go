//go:build unix

package wire

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// readRecorder sits between the client and the kernel's shell port and
// records the size of every read from the client.
type readRecorder struct {
	mu    sync.Mutex
	reads []int
}

func (r *readRecorder) take() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reads
	r.reads = nil
	return out
}

func (r *readRecorder) serve(t *testing.T, target string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var conns []net.Conn
	var cmu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			lc, err := ln.Accept()
			if err != nil {
				return
			}
			rc, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				lc.Close()
				continue
			}
			cmu.Lock()
			conns = append(conns, lc, rc)
			cmu.Unlock()
			wg.Go(func() { io.Copy(lc, rc); lc.Close() })
			wg.Go(func() {
				defer rc.Close()
				buf := make([]byte, 1<<16)
				for {
					n, err := lc.Read(buf)
					if n > 0 {
						r.mu.Lock()
						r.reads = append(r.reads, n)
						r.mu.Unlock()
						if _, err := rc.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// TestRequestIsOneWrite: a request leaves the client in one write, as
// libzmq sends it. Written frame by frame, each of the ~14 pieces crosses
// every hop of a forward apart (through gopyk-kernel, one SSH packet each),
// which cost 0.2–0.4 ms per execute round trip over gopyk.
func TestRequestIsOneWrite(t *testing.T) {
	t.Parallel()
	k := startKernel(t, newConnInfo(t, "tcp"))
	rec := &readRecorder{}
	front := k.ci
	front.ShellPort = rec.serve(t, net.JoinHostPort(k.ci.IP, strconv.Itoa(k.ci.ShellPort)))
	c := dialKernel(t, front)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		rec.take()
		if r, err := c.Execute(ctx, "pass"); err != nil || r.Status != "ok" {
			t.Fatalf("execute %d: %v %+v", i, err, r)
		}
		if reads := rec.take(); len(reads) != 1 {
			t.Fatalf("execute_request %d reached the kernel's shell port in %d reads of %v bytes, want 1", i, len(reads), reads)
		}
	}
}
