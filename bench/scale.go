//go:build linux

package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// scale is n kernels started at once.
type scale struct {
	n       int
	ready   time.Duration // until the last one answered
	failed  []string
	clean   int   // launchers that exited on their own after shutdown_request
	leftErr error // remote kernels or supervisors left over
}

// runScale starts n kernels at once (start), waits until every one answers
// and iopub delivers, then shuts them all down the way Jupyter does.
func (b *bed) runScale(ctx context.Context, n int, start func(context.Context) (*kernel, error)) scale {
	res := scale{n: n}
	ks := make([]*kernel, n)
	errs := make([]error, n)
	t := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ks[i], errs[i] = start(ctx) })
	}
	wg.Wait()
	res.ready = time.Since(t)
	for i, err := range errs {
		if err != nil {
			res.failed = append(res.failed, fmt.Sprintf("kernel %d: %v", i+1, err))
		}
	}
	var mu sync.Mutex
	for _, k := range ks {
		if k == nil {
			continue
		}
		wg.Go(func() {
			if k.shutdown(ctx) {
				mu.Lock()
				res.clean++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.leftErr = b.waitNoRemote(30 * time.Second)
	return res
}
