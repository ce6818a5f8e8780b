//go:build linux

package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/gopyk/gopyk/wire"
)

// interrupts times n interrupts of each kernel, taking turns: a cell that
// sleeps, then SIGINT to the kernel's process group once the cell runs (as
// jupyter_client's interrupt_kernel does for the process it started: the
// local kernel, or gopyk-kernel), until the cell's reply (KeyboardInterrupt)
// and idle are back.
func interrupts(ctx context.Context, n int, ks ...*kernel) ([][]time.Duration, error) {
	out := make([][]time.Duration, len(ks))
	for range n {
		for i, k := range ks {
			d, err := interruptOnce(ctx, k)
			if err != nil {
				return nil, fmt.Errorf("interrupt of kernel %d: %w", i+1, err)
			}
			out[i] = append(out[i], d)
		}
	}
	return out, nil
}

func interruptOnce(ctx context.Context, k *kernel) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sent := make(chan time.Time, 1)
	started := false
	r, err := k.c.Execute(ctx, "import time; time.sleep(20)", wire.OnIOPub(func(m *wire.Message) {
		if m.Header.MsgType != "execute_input" || started {
			return
		}
		started = true
		go func() {
			// execute_input is published just before the cell runs.
			time.Sleep(100 * time.Millisecond)
			sent <- time.Now()
			syscall.Kill(-k.p.pid(), syscall.SIGINT)
		}()
	}))
	if err != nil {
		return 0, err
	}
	if !started {
		return 0, fmt.Errorf("no execute_input on iopub")
	}
	t0 := <-sent
	if r.Ename != "KeyboardInterrupt" {
		return 0, fmt.Errorf("the cell ended with %q %q, not KeyboardInterrupt", r.Status, r.Ename)
	}
	return time.Since(t0), nil
}
