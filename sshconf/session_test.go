//go:build linux

package sshconf

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
)

// A Session against the real sshd: stdin written right after Start (the
// exec not yet answered) reaches the command, stdout and stderr come back,
// the exit status is reported, and Close kills a command that still runs.
func TestSessionPipelinedExec(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	c := mustDial(t, Route{tbSettings(s)})

	sess, err := c.OpenSession()
	if err != nil {
		t.Fatal(err)
	}
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	stderr, _ := sess.StderrPipe()
	if err := sess.Start("read line; echo got $line; echo oops >&2; exit 3"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "hello\n"); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(stdout)
	errOut, _ := io.ReadAll(stderr)
	err = sess.Wait()
	var ee *ExitError
	if strings.TrimSpace(string(out)) != "got hello" || strings.TrimSpace(string(errOut)) != "oops" ||
		!errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Fatalf("stdout %q, stderr %q, wait %v; want got hello, oops, status 3", out, errOut, err)
	}
	sess.Close()

	// Exit 0 is nil; stderr nobody reads does not stall the command.
	sess, _ = c.OpenSession()
	stdout, _ = sess.StdoutPipe()
	if err := sess.Start("head -c 3000000 /dev/zero >&2; echo done"); err != nil {
		t.Fatal(err)
	}
	if out, _ := io.ReadAll(stdout); strings.TrimSpace(string(out)) != "done" {
		t.Fatalf("stdout %q", out)
	}
	if err := sess.Wait(); err != nil {
		t.Fatalf("exit 0: %v", err)
	}
	sess.Close()

	// Close kills what still runs, and Wait returns.
	sess, _ = c.OpenSession()
	stdout, _ = sess.StdoutPipe()
	if err := sess.Start("echo $$; exec sleep 60"); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 32)
	n, _ := stdout.Read(line)
	pid, err := strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil {
		t.Fatalf("pid line %q", line[:n])
	}
	sess.Close()
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after Close")
	}
	waitFor(t, "the command to be killed", 10*time.Second, func() bool { return !pidAlive(pid) })
}
