package sshconf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// ttyMu makes questions take turns on the one terminal: `gopyk list`
// dials several hosts at once.
var ttyMu sync.Mutex

// prompter asks the user, the way OpenSSH does: through $SSH_ASKPASS when
// SSH_ASKPASS_REQUIRE and the display say so, else on the terminal (never
// stdin: Jupyter owns it). It pauses the handshake deadline while a human
// is typing.
type prompter struct {
	tty     bool   // a terminal is there and we may ask on it
	askpass string // SSH_ASKPASS program to ask with instead of the terminal
	batch   bool   // BatchMode: the reason nothing may be asked
	pause   func()
	resume  func()
	// answer replaces the terminal in tests.
	answer func(question string, echo bool) (string, error)

	holdMu sync.Mutex
	holds  int

	askedMu sync.Mutex
	asked   []string // what the server wanted that nobody could answer, for the error
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

// canAsk reports whether a question would reach someone.
func (p *prompter) canAsk() bool { return p != nil && (p.tty || p.askpass != "") }

func (p *prompter) ask(question string, echo bool) (string, error) {
	if !p.canAsk() {
		return "", errNoTTY
	}
	ttyMu.Lock()
	defer ttyMu.Unlock()
	defer p.hold()()
	if p.answer != nil {
		return p.answer(question, echo)
	}
	if p.askpass != "" {
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
	return readTTY(in, out, question, echo)
}

func (p *prompter) secret(question string) (string, error) { return p.ask(question, false) }

// unanswered records what the server asked for that nobody could answer.
func (p *prompter) unanswered(what string) {
	p.askedMu.Lock()
	defer p.askedMu.Unlock()
	for _, w := range p.asked {
		if w == what {
			return
		}
	}
	p.asked = append(p.asked, what)
}

func (p *prompter) unansweredList() []string {
	p.askedMu.Lock()
	defer p.askedMu.Unlock()
	return append([]string(nil), p.asked...)
}

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

// Askpass is the SSH_ASKPASS program OpenSSH would ask with, given whether
// it has a terminal, or "" when it would not use one (see askpassProgram).
func Askpass(tty bool) string { return askpassProgram(tty) }

// askpassProgram decides, as OpenSSH's readpass.c does, whether to ask
// through $SSH_ASKPASS: it needs a display (DISPLAY or WAYLAND_DISPLAY)
// and is used when there is no terminal; SSH_ASKPASS_REQUIRE=prefer uses it
// even with a terminal, =force even without a display, =never never.
func askpassProgram(tty bool) string {
	prog := os.Getenv("SSH_ASKPASS")
	if prog == "" {
		return ""
	}
	display := os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != ""
	switch os.Getenv("SSH_ASKPASS_REQUIRE") {
	case "force":
		return prog
	case "never":
		return ""
	case "prefer":
		if display {
			return prog
		}
		return ""
	}
	if !tty && display {
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
