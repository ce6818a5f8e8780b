package sshconf

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// sharedDir holds fixtures that are slow to make (encrypted keys: bcrypt
// under -race costs seconds) and shared by several tests.
var sharedDir string

// Every goroutine Dial starts (watcher, keepalive, ProxyCommand reaper)
// must be gone once the tests' clients are closed.
func TestMain(m *testing.M) {
	var err error
	if sharedDir, err = os.MkdirTemp("", "gpk-sshconf-test-"); err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(sharedDir)
		os.Exit(code)
	}))
}
