package sshconf

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/crypto/ssh"
)

// Session is a remote command started the way OpenSSH's ssh starts one: the
// exec request goes out without waiting for the server's answer, so what is
// written to stdin right after Start travels in the same round trip.
// golang.org/x/crypto's Session.Start waits for the answer first: one round
// trip more on every command, and so on every launch over a slow link.
//
// The order of packets on the connection keeps it safe: sshd handles the
// exec before the data behind it (data before an exec would be dropped).
// What is lost is the server's "exec failed" (sshd could not fork): the
// command then never answers, which the caller's deadline covers, as it
// covers a command that hangs.
type Session struct {
	ch     ssh.Channel
	reqs   <-chan *ssh.Request
	stderr bool // StderrPipe was called: the caller reads it

	mu      sync.Mutex
	started bool
	done    chan struct{} // closed when the channel's requests end
	err     error         // Wait's result

	closeOnce sync.Once // a second Close waits for the first: see Close
	closeErr  error
}

// OpenSession opens a session channel for one command.
func (c *Client) OpenSession() (*Session, error) {
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		return nil, err
	}
	return &Session{ch: ch, reqs: reqs, done: make(chan struct{})}, nil
}

// StdinPipe writes to the command's stdin; closing it sends EOF.
func (s *Session) StdinPipe() (io.WriteCloser, error) { return stdin{s.ch}, nil }

// StdoutPipe reads the command's stdout. It must be read, or the channel's
// window fills and the command stalls.
func (s *Session) StdoutPipe() (io.Reader, error) { return s.ch, nil }

// StderrPipe reads the command's stderr; without it, stderr is discarded.
func (s *Session) StderrPipe() (io.Reader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return nil, errors.New("ssh: StderrPipe after Start")
	}
	s.stderr = true
	return s.ch.Stderr(), nil
}

type stdin struct{ ch ssh.Channel }

func (w stdin) Write(p []byte) (int, error) { return w.ch.Write(p) }
func (w stdin) Close() error                { return w.ch.CloseWrite() }

// Start sends the exec request for cmd and returns without waiting for
// the server's answer.
func (s *Session) Start(cmd string) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("ssh: session already started")
	}
	s.started = true
	discard := !s.stderr
	s.mu.Unlock()
	if discard {
		go func() { _, _ = io.Copy(io.Discard, s.ch.Stderr()) }() // ends with the channel
	}
	if _, err := s.ch.SendRequest("exec", false, ssh.Marshal(struct{ Command string }{cmd})); err != nil {
		return fmt.Errorf("ssh: exec request: %w", err)
	}
	go s.wait()
	return nil
}

// Signal sends sig to the command (sshd signals the session's process group).
func (s *Session) Signal(sig ssh.Signal) error {
	_, err := s.ch.SendRequest("signal", false, ssh.Marshal(struct{ Signal string }{string(sig)}))
	return err
}

// Wait returns once the command ended and the server closed the channel:
// nil for exit status 0, an *ExitError otherwise.
func (s *Session) Wait() error {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		return errors.New("ssh: session not started")
	}
	<-s.done
	return s.err
}

// Close kills what still runs of the command and closes the channel, which
// makes Wait return: closing the channel alone would leave a remote
// process that reads and writes nothing (a hung pre-command, python stuck
// on a dead NFS home) running for ever. A detached process in its own
// session (the supervisor) is not touched.
//
// Every Close returns only once the signal is on its way: a caller that
// closes the connection next (a launch timeout closes the session from two
// goroutines, then the connection) must not cut it off, or the command
// outlives its session.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		started := s.started
		s.mu.Unlock()
		if started {
			_ = s.Signal(ssh.SIGKILL)
		}
		s.closeErr = s.ch.Close()
		if !started {
			// No Wait will come: drain the requests so the channel can go.
			go func() {
				for r := range s.reqs {
					if r.WantReply {
						_ = r.Reply(false, nil)
					}
				}
			}()
		}
	})
	return s.closeErr
}

func (s *Session) wait() {
	status, signal, msg := -1, "", ""
	for r := range s.reqs {
		switch r.Type {
		case "exit-status":
			var v struct{ Status uint32 }
			if ssh.Unmarshal(r.Payload, &v) == nil {
				status = int(v.Status)
			}
		case "exit-signal":
			var v struct {
				Signal     string
				CoreDumped bool
				Error      string
				Lang       string
			}
			if ssh.Unmarshal(r.Payload, &v) == nil {
				signal, msg = v.Signal, v.Error
			}
		default:
			if r.WantReply { // keepalives, as OpenSSH answers them
				_ = r.Reply(false, nil)
			}
		}
	}
	switch {
	case status == 0:
	case status > 0 || signal != "":
		s.err = &ExitError{Status: status, Signal: signal, Msg: msg}
	default:
		s.err = &ssh.ExitMissingError{}
	}
	close(s.done)
}

// ExitError is a command that ended with a non-zero status or a signal.
type ExitError struct {
	Status int    // -1 when the server sent none (killed by Signal)
	Signal string // "" unless killed by a signal: "KILL", "TERM"…
	Msg    string
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return fmt.Sprintf("remote command killed by signal %s %s", e.Signal, e.Msg)
	}
	return fmt.Sprintf("remote command exited with status %d", e.Status)
}

// ExitStatus is the exit status, 128 + the signal's number when killed
// by one (as a shell reports it), or -1 when unknown.
func (e *ExitError) ExitStatus() int {
	if e.Status >= 0 {
		return e.Status
	}
	if n, ok := signalNumbers[e.Signal]; ok {
		return 128 + n
	}
	return -1
}

var signalNumbers = map[string]int{"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "ABRT": 6, "FPE": 8, "KILL": 9, "SEGV": 11, "PIPE": 13, "ALRM": 14, "TERM": 15, "USR1": 10, "USR2": 12}
