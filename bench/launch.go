//go:build linux

package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

//go:embed launch.py
var launchPy []byte

// launches is one series of launches by jupyter_client.
type launches struct {
	launch, shutdown []time.Duration
}

// series is a kind of launch: a spec, and the directory (the remote
// ~/.gopyk) deleted before each launch for cold ones.
type series struct {
	spec, coldDir string
	out           *launches
	// noMaster: the host's gopyk master is stopped before each launch,
	// which then starts one and logs in (a first launch).
	noMaster bool
}

// runLaunches runs n launches of every series, interleaved (a, b, c, a, b,
// c, …) so that a machine whose load drifts treats them alike, in one
// jupyter_client process (its import cost is not counted).
func (b *bed) runLaunches(ctx context.Context, n int, ss ...series) error {
	script := filepath.Join(b.home, "launch.py")
	if err := os.WriteFile(script, launchPy, 0o644); err != nil {
		return err
	}
	type step struct {
		spec, cold string
		pre        []string
	}
	var plan []step
	var owner []*launches
	for range n {
		for _, s := range ss {
			st := step{spec: s.spec, cold: s.coldDir}
			if s.noMaster {
				st.pre = []string{filepath.Join(b.bin, "gopyk"), "connect", "--stop", "--kernel-name", s.spec}
			}
			plan = append(plan, st)
			owner = append(owner, s.out)
		}
	}
	rows := make([][3]any, len(plan))
	for i, st := range plan {
		rows[i] = [3]any{st.spec, st.cold, st.pre}
	}
	planJSON, _ := json.Marshal(rows)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(len(plan))*60*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, python, script, string(planJSON))
	c.Env = b.env
	c.Dir = b.home
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	// Whatever the driver left (a kernel it could not shut down) goes with its group.
	if c.Process != nil {
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	}
	got := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		var r struct {
			I                int
			Launch, Shutdown float64
			Error            string
		}
		if jerr := json.Unmarshal([]byte(line), &r); jerr != nil || r.I < 0 || r.I >= len(plan) {
			return fmt.Errorf("launch driver printed %q: %v", line, jerr)
		}
		if r.Error != "" {
			return fmt.Errorf("launch %d (%s): %s; stderr: %s", r.I+1, plan[r.I].spec, r.Error, tail(stderr.String()))
		}
		o := owner[r.I]
		o.launch = append(o.launch, secs(r.Launch))
		o.shutdown = append(o.shutdown, secs(r.Shutdown))
		got++
	}
	if err != nil {
		return fmt.Errorf("launch driver: %w; stderr: %s", err, tail(stderr.String()))
	}
	if got != len(plan) {
		return fmt.Errorf("launch driver: %d of %d launches reported", got, len(plan))
	}
	return nil
}

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 6 {
		lines = lines[len(lines)-6:]
	}
	return strings.Join(lines, " | ")
}
