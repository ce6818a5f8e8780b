//go:build linux

package main

import (
	"fmt"
	"slices"
	"time"
)

func sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := sorted(ds)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pct is the nearest-rank percentile p (0..100).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := sorted(ds)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func medianF(fs []float64) float64 {
	if len(fs) == 0 {
		return 0
	}
	s := slices.Clone(fs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// dur prints seconds for long spans and milliseconds for short ones.
func dur(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// minMedMax is "min / median / max" in seconds.
func minMedMax(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n/a"
	}
	s := sorted(ds)
	return fmt.Sprintf("%.2f / **%.2f** / %.2f s (n=%d)", s[0].Seconds(), median(s).Seconds(), s[len(s)-1].Seconds(), len(s))
}

// medP99 is "median / p99" in milliseconds.
func medP99(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("**%.2f** / %.2f ms", ms(median(ds)), ms(pct(ds, 99)))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mb(kb int) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// minMedMaxMs is "min / median / max" in milliseconds.
func minMedMaxMs(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n/a"
	}
	s := sorted(ds)
	return fmt.Sprintf("%.0f / **%.0f** / %.0f ms (n=%d)", ms(s[0]), ms(median(s)), ms(s[len(s)-1]), len(s))
}
