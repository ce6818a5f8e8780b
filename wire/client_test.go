//go:build unix

package wire

import (
	"context"
	"fmt"
	"sync"

	"testing"
	"time"
)

func dialKernel(t *testing.T, ci ConnInfo, opts ...Option) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, ci, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestKernel drives a real ipykernel through the whole life of a session,
// over tcp and over unix sockets.
func TestKernel(t *testing.T) {
	for _, transport := range []string{"tcp", "ipc"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			k := startKernel(t, newConnInfo(t, transport))
			c := dialKernel(t, k.ci)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()

			info, err := c.KernelInfo(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.Header.MsgType != "kernel_info_reply" || info.Str("status") != "ok" || info.Str("implementation") != "ipython" {
				t.Errorf("kernel_info_reply: %s %v", info.Header.MsgType, info.Content)
			}

			r, err := c.Execute(ctx, "1+1")
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != "ok" || r.Result != "2" || r.ExecutionCount < 1 {
				t.Errorf("1+1: %+v", r)
			}

			r, err = c.Execute(ctx, "import sys; print('out'); print('err', file=sys.stderr)")
			if err != nil {
				t.Fatal(err)
			}
			if r.Stdout != "out\n" || r.Stderr != "err\n" {
				t.Errorf("print: stdout %q stderr %q", r.Stdout, r.Stderr)
			}

			// stop_on_error false: with it, ipykernel aborts the requests
			// that reach it while it winds the error down, and on a loaded
			// machine the concurrent ones below can be that fast (a local
			// client's race, wire/abort_test.go).
			r, err = c.Execute(ctx, "1/0", ContinueOnError())
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != "error" || r.Ename != "ZeroDivisionError" || len(r.Traceback) == 0 {
				t.Errorf("error cell: %+v", r)
			}

			if err := c.Heartbeat(ctx); err != nil {
				t.Errorf("heartbeat: %v", err)
			}

			// Concurrent callers share the sockets; each gets its own answer.
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() {
					r, err := c.Execute(ctx, fmt.Sprintf("print(%d); %d*10", i, i))
					if err != nil {
						t.Error(err)
						return
					}
					if r.Stdout != fmt.Sprintf("%d\n", i) || r.Result != fmt.Sprintf("%d", i*10) {
						t.Errorf("concurrent execute %d: %+v", i, r)
					}
				})
			}
			wg.Wait()

			d, err := c.RoundTrip(ctx, 5)
			if err != nil || len(d) != 5 {
				t.Errorf("round trip: %v %v", d, err)
			}

			// Interrupt a sleeping cell with a message on control, once the
			// cell has shown that it is running.
			started := make(chan struct{})
			var once bool
			done := make(chan struct{})
			var ir *ExecResult
			var ierr error
			go func() {
				defer close(done)
				ir, ierr = c.Execute(ctx, "import time; print('sleeping', flush=True); time.sleep(100)", OnIOPub(func(m *Message) {
					if m.Header.MsgType == "stream" && !once {
						once = true
						close(started)
					}
				}))
			}()
			select {
			case <-started:
			case <-done:
				t.Fatalf("sleep cell ended early: %+v %v", ir, ierr)
			case <-ctx.Done():
				t.Fatal("sleep cell never printed")
			}
			// A SIGINT that lands in ipykernel's own output flushing, between the
			// print and the sleep, is swallowed there; a user would press
			// interrupt again, and so does the test.
			for tries := 0; ; tries++ {
				rep, err := c.Interrupt(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if rep.Header.MsgType != "interrupt_reply" {
					t.Errorf("interrupt reply type %s", rep.Header.MsgType)
				}
				select {
				case <-done:
				case <-time.After(2 * time.Second):
					if tries < 4 {
						continue
					}
					t.Fatal("five interrupts did not stop the cell")
				}
				break
			}
			if ierr != nil {
				t.Fatal(ierr)
			}
			if ir.Status != "error" || ir.Ename != "KeyboardInterrupt" {
				t.Errorf("interrupted cell: %+v", ir)
			}

			rep, err := c.Shutdown(ctx, false)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Header.MsgType != "shutdown_reply" || rep.Content["restart"] != false {
				t.Errorf("shutdown reply: %s %v", rep.Header.MsgType, rep.Content)
			}
			select {
			case <-k.exited:
			case <-ctx.Done():
				t.Fatal("kernel still running after shutdown_request")
			}
			if code := k.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("kernel exit code %d after shutdown", code)
			}
			// With the kernel gone, waits end with an error, not a hang.
			ectx, ecancel := context.WithTimeout(ctx, 5*time.Second)
			defer ecancel()
			if _, err := c.Execute(ectx, "1"); err == nil {
				t.Error("execute on a dead kernel succeeded")
			}
		})
	}
}

// BenchmarkExecute measures one execute round trip ("pass") against a local
// ipykernel over tcp; `make bench` compares it with the remote path.
func BenchmarkExecute(b *testing.B) {
	ci := ConnInfo{Key: NewKey(), Transport: "tcp", IP: "127.0.0.1", SignatureScheme: SchemeHMACSHA256}
	ports, err := FreeTCPPorts(5)
	if err != nil {
		b.Fatal(err)
	}
	ci.SetPorts(ports)
	k := startKernel(b, ci)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := Dial(ctx, k.ci)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.RoundTrip(ctx, 1); err != nil {
			b.Fatal(err)
		}
	}
}
