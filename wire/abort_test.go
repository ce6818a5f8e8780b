//go:build unix

package wire

import (
	"context"
	"testing"
	"time"
)

// A cell queued behind a failing one is aborted (stop_on_error); Execute
// must still return, with status "aborted". With ContinueOnError it runs.
func TestExecuteAborted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		opts   []ExecOption
		status string
	}{{"stop_on_error", nil, "aborted"}, {"ContinueOnError", []ExecOption{ContinueOnError()}, "ok"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k := startKernel(t, newConnInfo(t, "tcp"))
			c := dialKernel(t, k.ci)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			running := make(chan struct{})
			first := make(chan *ExecResult, 1)
			go func() {
				seen := false
				r, err := c.Execute(ctx, "import time; time.sleep(1); 1/0", append(tc.opts, OnIOPub(func(m *Message) {
					if m.Header.MsgType == "execute_input" && !seen {
						seen = true
						close(running)
					}
				}))...)
				if err != nil {
					t.Error(err)
				}
				first <- r
			}()
			select {
			case <-running:
			case <-ctx.Done():
				t.Fatal("first cell never started")
			}
			r, err := c.Execute(ctx, "1")
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != tc.status {
				t.Errorf("queued cell: status %q, want %s", r.Status, tc.status)
			}
			if f := <-first; f == nil || f.Status != "error" || f.Ename != "ZeroDivisionError" {
				t.Errorf("failing cell: %+v", f)
			}
		})
	}
}

// An empty key means unsigned messages both ways, as in jupyter_client.
func TestEmptyKeyKernel(t *testing.T) {
	t.Parallel()
	ci := newConnInfo(t, "ipc")
	ci.Key = ""
	k := startKernel(t, ci)
	c := dialKernel(t, k.ci)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := c.Execute(ctx, "'ok'")
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != "'ok'" {
		t.Errorf("unsigned execute: %+v", r)
	}
}
