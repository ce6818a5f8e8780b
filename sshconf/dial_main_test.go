package sshconf

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine Dial starts (watcher, keepalive, ProxyCommand reaper)
// must be gone once the tests' clients are closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
