package provisioner

import (
	"regexp"
	"strings"
	"sync"
)

// tailBuffer keeps the last max bytes written: a remote's stderr, for errors.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// lastLine is the last line of a kernel's output that says something:
// pydevd's start-up notice ("0.00s - Debugger warning: …", printed by every
// Python 3.11 kernel) is skipped, so it never poses as the reason a kernel died.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !pydevdNotice.MatchString(l) {
			return l
		}
	}
	return ""
}

var pydevdNotice = regexp.MustCompile(`^\d+\.\d+s - `)
