package sshconf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// prompter asks the user on the terminal (never stdin: Jupyter owns it) and
// pauses the handshake deadline while a human is typing.
type prompter struct {
	interactive bool
	askpass     string     // SSH_ASKPASS program, used for passphrases when there is no terminal
	batch       bool       // BatchMode: the reason nothing may be asked
	mu          sync.Mutex // one question at a time
	pause       func()
	resume      func()
	// answer replaces the terminal in tests.
	answer func(question string, echo bool) (string, error)

	holdMu sync.Mutex
	holds  int
}

// hold stops the handshake deadline until the returned func is called;
// holds nest (a passphrase prompt inside a key decryption).
func (p *prompter) hold() (release func()) {
	p.holdMu.Lock()
	p.holds++
	if p.holds == 1 && p.pause != nil {
		p.pause()
	}
	p.holdMu.Unlock()
	return func() {
		p.holdMu.Lock()
		p.holds--
		if p.holds == 0 && p.resume != nil {
			p.resume()
		}
		p.holdMu.Unlock()
	}
}

var errNoTTY = errors.New("no terminal to ask on")

func (p *prompter) ask(question string, echo bool) (string, error) {
	if p == nil || !p.interactive && p.askpass == "" {
		return "", errNoTTY
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.hold()()
	if p.answer != nil {
		return p.answer(question, echo)
	}
	if !p.interactive {
		return runAskpass(p.askpass, question)
	}
	in, out, err := openTTY()
	if err != nil {
		return "", fmt.Errorf("%w: %v", errNoTTY, err)
	}
	defer in.Close()
	if out != in {
		defer out.Close()
	}
	fmt.Fprint(out, question)
	if !echo {
		b, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(out)
		return string(b), err
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

func (p *prompter) secret(question string) (string, error) { return p.ask(question, false) }

func (p *prompter) confirm(question string) bool {
	for range 3 {
		a, err := p.ask(question, true)
		if err != nil {
			return false
		}
		switch strings.ToLower(strings.TrimSpace(a)) {
		case "yes":
			return true
		case "no":
			return false
		}
		question = "Please type 'yes' or 'no': "
	}
	return false
}

// askpassProgram decides, as OpenSSH's readpass.c does, whether to ask
// through $SSH_ASKPASS: always with SSH_ASKPASS_REQUIRE=force, and without
// a terminal when a display is there unless SSH_ASKPASS_REQUIRE=never.
func askpassProgram(interactive bool) string {
	prog := os.Getenv("SSH_ASKPASS")
	if prog == "" {
		return ""
	}
	switch os.Getenv("SSH_ASKPASS_REQUIRE") {
	case "force":
		return prog
	case "never":
		return ""
	}
	if !interactive && (os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "") {
		return prog
	}
	return ""
}

func runAskpass(prog, question string) (string, error) {
	// A human answers: generous, but bounded.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, question)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS_PROMPT=")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("SSH_ASKPASS %s: %w", prog, err)
	}
	return strings.TrimRight(string(out), "\r\n"), nil
}
