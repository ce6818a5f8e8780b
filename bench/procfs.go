//go:build linux

package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Linux /proc readers for the footprint figures.

func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '}))
}

// memKB returns VmHWM (peak RSS) and VmRSS of pid in kB.
func memKB(pid int) (peak, rss int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmHWM:":
			peak = n
		case "VmRSS:":
			rss = n
		}
	}
	return peak, rss
}

// stat is the part of /proc/<pid>/stat the bench needs.
type stat struct {
	pid, ppid   int
	comm        string
	state       byte
	cpuTicks    int64 // utime+stime in clock ticks (USER_HZ)
	startTicks  int64 // start time after boot, ticks: tells reused PIDs apart
	threadCount int
}

func readStat(pid int) (stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < 0 || end+2 > len(s) {
		return stat{}, false
	}
	f := strings.Fields(s[end+2:])
	// f[0] is field 3 (state); utime is field 14, stime 15, num_threads 20, starttime 22.
	if len(f) < 20 {
		return stat{}, false
	}
	num := func(i int) int64 { n, _ := strconv.ParseInt(f[i-3], 10, 64); return n }
	return stat{
		pid: pid, ppid: int(num(4)), comm: s[open+1 : end], state: f[0][0],
		cpuTicks: num(14) + num(15), threadCount: int(num(20)), startTicks: num(22),
	}, true
}

func pids() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	out := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// clockTicks is USER_HZ; 100 on every Linux the bench runs on.
const clockTicks = 100

func fdCount() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}
