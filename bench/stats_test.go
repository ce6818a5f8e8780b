//go:build linux

package main

import (
	"strings"
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if got := median(ds); got != 50500*time.Microsecond {
		t.Errorf("median = %v, want 50.5ms", got)
	}
	if got := pct(ds, 99); got != 99*time.Millisecond {
		t.Errorf("p99 = %v, want 99ms", got)
	}
	if got := pct(ds[:1], 99); got != 100*time.Millisecond {
		t.Errorf("p99 of one = %v, want 100ms", got)
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("median sorted its input in place")
	}
	if got := minMedMax(ds[:3]); got != "0.10 / **0.10** / 0.10 s (n=3)" {
		t.Errorf("minMedMax = %q", got)
	}
	if got := medianF([]float64{3, 1, 2, 10}); got != 2.5 {
		t.Errorf("medianF = %v, want 2.5", got)
	}
}

func TestThroughputCellSize(t *testing.T) {
	// The cell writes mb MiB: 1024 lines of 1 KiB per MiB.
	c := throughputCell(7)
	if !strings.Contains(c, "'x' * 1023 + '\\n') * 1024") || !strings.Contains(c, "range(7)") {
		t.Errorf("cell %q does not print 7 MiB in 1 KiB lines", c)
	}
}

func TestReadStatSelf(t *testing.T) {
	st, ok := readStat(1)
	if !ok || st.pid != 1 || st.threadCount < 1 {
		t.Fatalf("readStat(1) = %+v, %v", st, ok)
	}
	if peak, rss := memKB(1); rss <= 0 || peak < rss {
		t.Errorf("memKB(1) = %d, %d: want 0 < rss <= peak", peak, rss)
	}
}
