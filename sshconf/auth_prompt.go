package sshconf

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/term"
)

// prompter asks the user on the terminal (never stdin: Jupyter owns it) and
// pauses the handshake deadline while a human is typing.
type prompter struct {
	interactive bool
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
	if p == nil || !p.interactive {
		return "", errNoTTY
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.hold()()
	if p.answer != nil {
		return p.answer(question, echo)
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
