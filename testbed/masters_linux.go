package testbed

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Masters lists the gopyk masters (package master) started with
// XDG_RUNTIME_DIR=runtimeDir: a test that gives its gopyk a runtime dir of
// its own finds the masters its kernels started by their environment.
func Masters(runtimeDir string) []int {
	var out []int
	for _, p := range allProcs() {
		if p.state == 'Z' || p.pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/environ")
		if err != nil {
			continue
		}
		env := append(append([]byte{0}, b...), 0)
		if bytes.Contains(env, []byte("\x00GOPYK_MASTER=1\x00")) && bytes.Contains(env, []byte("\x00XDG_RUNTIME_DIR="+runtimeDir+"\x00")) {
			out = append(out, p.pid)
		}
	}
	return out
}

// StopMasters ends the masters of runtimeDir (Masters): SIGTERM, then
// SIGKILL after 5 s. It returns how many there were.
func StopMasters(runtimeDir string) int {
	pids := Masters(runtimeDir)
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range pids {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(p) {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
	return len(pids)
}
