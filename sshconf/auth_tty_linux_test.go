package sshconf

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
)

const askChildEnv = "GPK14_ASK_CHILD"

// TestAskChild is the child of TestPromptEchoOff: it asks n questions on
// its terminal and reports each answer's length on stdout.
func TestAskChild(t *testing.T) {
	if os.Getenv(askChildEnv) == "" {
		return // only as TestPromptEchoOff's child
	}
	p := &prompter{tty: true}
	for i := range 50 {
		a, err := p.ask(fmt.Sprintf("(u@h) Verification code %d: ", i), false)
		if err != nil {
			fmt.Printf("error %v\n", err)
			return
		}
		fmt.Printf("len %d\n", len(a))
	}
}

// An answer typed the instant its prompt appears is never echoed: echo is
// off before the prompt is printed. Both ways gopyk finds a terminal: the
// controlling one, and (under Jupyter, which starts kernels with setsid)
// the one on stderr.
func TestPromptEchoOff(t *testing.T) {
	for _, ctty := range []bool{true, false} {
		t.Run(fmt.Sprintf("ctty=%v", ctty), func(t *testing.T) {
			m, s, err := testbed.OpenPTY()
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestAskChild$")
			cmd.Env = append(os.Environ(), askChildEnv+"=1")
			out := &strings.Builder{}
			cmd.Stdout = out
			cmd.Stderr = s
			cmd.Stdin = nil // a pipe from /dev/null, as under KernelManager
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if ctty {
				cmd.Stdin = s
				cmd.SysProcAttr.Setctty = true
				cmd.SysProcAttr.Ctty = 0
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			s.Close()
			screen := &strings.Builder{}
			r := bufio.NewReader(m)
			for i := range 50 {
				prompt := fmt.Sprintf("Verification code %d: ", i)
				for !strings.HasSuffix(screen.String(), prompt) {
					b, err := r.ReadByte()
					if err != nil {
						t.Fatalf("pty: %v; screen so far %q", err, screen)
					}
					screen.WriteByte(b)
				}
				// Typed the instant the prompt shows.
				fmt.Fprintf(m, "secret-%d\n", i)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("child: %v; out %q", err, out)
			}
			// Whatever the terminal still shows.
			m.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			rest := make([]byte, 4096)
			for {
				n, err := r.Read(rest)
				screen.Write(rest[:n])
				if err != nil {
					break
				}
			}
			if strings.Count(out.String(), "len 8") < 10 || strings.Count(out.String(), "len ") != 50 {
				t.Fatalf("answers: %q", out)
			}
			if n := strings.Count(screen.String(), "secret-"); n != 0 {
				t.Fatalf("%d of 50 answers were echoed:\n%q", n, screen)
			}
		})
	}
}
