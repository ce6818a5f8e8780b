//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gopyk/gopyk/wire"
)

// controlMaster starts an OpenSSH ControlMaster (ssh -M -N) for alias and
// runs one session through it, as sshpyk does (it launches its kernel
// through the master; a session also makes sshd turn Nagle off). It
// returns the master's socket; the process is the bed's.
func (b *bed) controlMaster(ctx context.Context, config, alias string) (string, error) {
	sock := filepath.Join(b.home, fmt.Sprintf("cm-%d", connSeq.Add(1)))
	p, err := b.start("ssh", "-F", config, "-o", "ControlMaster=yes", "-o", "ControlPath="+sock, "-o", "ControlPersist=no", "-N", alias)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := b.sshS(ctx, sock, "-O", "check", alias); err == nil {
			break
		}
		if p.exited() || time.Now().After(deadline) {
			return "", fmt.Errorf("ssh -M: no master at %s: %s", sock, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return sock, b.sshS(ctx, sock, alias, "true")
}

// sshS runs ssh -S sock args, through a master.
func (b *bed) sshS(ctx context.Context, sock string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "ssh", append([]string{"-F", "/dev/null", "-S", sock}, args...)...)
	c.Env = b.env
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("ssh -S %s %s: %w: %s", sock, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// gopykMaster starts gopyk's own master for alias (gopyk connect) and
// returns its socket.
func (b *bed) gopykMaster(ctx context.Context, config, alias string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, filepath.Join(b.bin, "gopyk"), "connect", "--ssh-config", config, alias)
	c.Env = b.env
	if out, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("gopyk connect %s: %w: %s", alias, err, out)
	}
	c = exec.CommandContext(ctx, filepath.Join(b.bin, "gopyk"), "connect", "--status", "--ssh-config", config, alias)
	c.Env = b.env
	out, err := c.CombinedOutput()
	m := regexp.MustCompile(`socket (\S+)`).FindSubmatch(out)
	if err != nil || m == nil {
		return "", fmt.Errorf("gopyk connect --status %s: %v: %s", alias, err, out)
	}
	return string(m[1]), nil
}

// masterPaths are clients of the hand kernel through OpenSSH's
// ControlMaster (ssh -M, then ssh -S -O forward -L: sshpyk's path) and the
// same forwards through gopyk's master (to weigh its relay), both to the
// sshd reached by alias in config. Closing them is the caller's.
func (b *bed) masterPaths(ctx context.Context, h *handKernel, config, alias string) (cm, gm *wire.Client, err error) {
	sock, err := b.controlMaster(ctx, config, alias)
	if err != nil {
		return nil, nil, err
	}
	if cm, err = b.masterForward(ctx, h, sock, alias); err != nil {
		return nil, nil, fmt.Errorf("OpenSSH ControlMaster: %w", err)
	}
	if sock, err = b.gopykMaster(ctx, config, alias); err == nil {
		gm, err = b.masterForward(ctx, h, sock, alias)
	}
	if err != nil {
		cm.Close()
		return nil, nil, fmt.Errorf("gopyk's master: %w", err)
	}
	return cm, gm, nil
}

// masterForward forwards fresh local ports to h's through the master at
// sock (ssh -S sock -O forward -L, what sshpyk does) and returns a client
// that saw the kernel ready through them.
func (b *bed) masterForward(ctx context.Context, h *handKernel, sock, alias string) (*wire.Client, error) {
	ports, err := b.freePorts(5)
	if err != nil {
		return nil, err
	}
	local := h.remote
	local.SetPorts(ports)
	args := []string{"-O", "forward"}
	for _, ch := range []string{wire.Shell, wire.IOPub, wire.Stdin, wire.Control, wire.HB} {
		args = append(args, "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", local.Port(ch), h.remote.Port(ch)))
	}
	if err := b.sshS(ctx, sock, append(args, alias)...); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(local.ShellPort)), 5*time.Second); err != nil {
		return nil, fmt.Errorf("forward through %s: %w", sock, err)
	} else {
		c.Close()
	}
	return connect(ctx, local, nil)
}
