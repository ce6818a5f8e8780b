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
	"strconv"
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

// runLaunches starts spec n times with jupyter_client's KernelManager (one
// python process for the series, so its import cost is not counted). With
// coldDir set, that directory (the remote ~/.gopyk) is deleted before each
// launch.
func (b *bed) runLaunches(ctx context.Context, spec string, n int, coldDir string) (launches, error) {
	script := filepath.Join(b.home, "launch.py")
	if err := os.WriteFile(script, launchPy, 0o644); err != nil {
		return launches{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(n)*90*time.Second)
	defer cancel()
	args := []string{script, spec, strconv.Itoa(n)}
	if coldDir != "" {
		args = append(args, coldDir)
	}
	c := exec.CommandContext(ctx, python, args...)
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
	var res launches
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		var r struct {
			Launch, Shutdown float64
			Error            string
		}
		if jerr := json.Unmarshal([]byte(line), &r); jerr != nil {
			return res, fmt.Errorf("launch driver printed %q: %w", line, jerr)
		}
		if r.Error != "" {
			return res, fmt.Errorf("launch %s: %s; stderr: %s", spec, r.Error, tail(stderr.String()))
		}
		res.launch = append(res.launch, secs(r.Launch))
		res.shutdown = append(res.shutdown, secs(r.Shutdown))
	}
	if err != nil {
		return res, fmt.Errorf("launch driver for %s: %w; stderr: %s", spec, err, tail(stderr.String()))
	}
	if len(res.launch) != n {
		return res, fmt.Errorf("launch driver for %s: %d of %d launches reported", spec, len(res.launch), n)
	}
	return res, nil
}

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 6 {
		lines = lines[len(lines)-6:]
	}
	return strings.Join(lines, " | ")
}
