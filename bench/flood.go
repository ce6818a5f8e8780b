//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gopyk/gopyk/wire"
)

// The flood of issue 12: 200 MiB as 3,200 flushed 64 KiB writes, each
// chunk numbered, so that a lost message shows as a gap.
const (
	floodChunks    = 3200
	floodChunkSize = 64 << 10
	floodRate      = 20_000_000 // bytes/s of the slowed link
)

// flood is one run of the flood cell: the chunks that arrived whole and in
// order, and the time from request to the cell's idle status (0: none came
// within floodWait, as when the kernel's PUB socket dropped it).
type flood struct {
	ok   int
	took time.Duration
}

const floodWait = 2 * time.Minute

func floodCell() string {
	return fmt.Sprintf("import sys\nfill = 'x' * %d\nfor i in range(%d):\n    sys.stdout.write('%%06d' %% i + fill)\n    sys.stdout.flush()\ndel fill",
		floodChunkSize-6, floodChunks)
}

// runFlood runs the flood cell on c and checks every chunk as it arrives.
func runFlood(ctx context.Context, c *wire.Client) (flood, error) {
	wctx, cancel := context.WithTimeout(ctx, floodWait)
	defer cancel()
	var (
		f       flood
		pending []byte
		want    int
	)
	t := time.Now()
	r, err := c.Execute(wctx, floodCell(), wire.OnIOPub(func(m *wire.Message) {
		if m.Header.MsgType != "stream" || m.Str("name") != "stdout" {
			return
		}
		pending = append(pending, m.Str("text")...)
		for len(pending) >= floodChunkSize {
			if i, err := strconv.Atoi(string(pending[:6])); err == nil && i >= want {
				want = i + 1
				f.ok++
			}
			pending = pending[floodChunkSize:]
		}
	}))
	f.took = time.Since(t)
	if err != nil && ctx.Err() == nil && wctx.Err() != nil {
		f.took = 0 // output lost on the way, the idle status with it: a figure, not a failure
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("flood cell: %w", err)
	}
	if r.Status != "ok" {
		return f, fmt.Errorf("flood cell: status %q", r.Status)
	}
	return f, nil
}

// benchFlood runs the flood on a local kernel and on a fresh gopyk kernel
// behind a 20 MB/s link, and records the peak memory of its gopyk-kernel and
// supervisor: the backlog waits on the remote, and must not in its memory.
func benchFlood(ctx context.Context, b *bed, r *results) error {
	lk, err := b.startLocal(ctx)
	if err != nil {
		return fmt.Errorf("local kernel: %w", err)
	}
	defer lk.shutdown(ctx)
	if r.floodLocal, err = runFlood(ctx, lk.c); err != nil {
		return fmt.Errorf("local: %w", err)
	}
	lk.shutdown(ctx)
	gk, err := b.startGopyk(ctx, b.rateSpec)
	if err != nil {
		return fmt.Errorf("gopyk kernel behind 20 MB/s: %w", err)
	}
	defer gk.shutdown(ctx)
	if r.floodGopyk, err = runFlood(ctx, gk.c); err != nil {
		return fmt.Errorf("gopyk: %w", err)
	}
	super := b.supervisor()
	if super == 0 {
		return errors.New("no remote supervisor found among the bench sshd's session processes")
	}
	r.floodLauncherPeak, _ = memKB(gk.p.pid())
	r.floodSuperPeak, _ = memKB(super)
	if !gk.shutdown(ctx) {
		return errors.New("gopyk-kernel did not exit after shutdown_request")
	}
	return b.waitNoRemote(15 * time.Second)
}
