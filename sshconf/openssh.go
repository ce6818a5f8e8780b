package sshconf

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// sshGTimeout bounds one `ssh -G`; it normally takes ~15 ms, but a `Match
// exec` in the user's config runs arbitrary commands.
const sshGTimeout = 5 * time.Second

// ParseSSHG parses the output of `ssh -G`: one "key value" pair a line. Keys
// are lower-cased (ssh prints a few in mixed case); a key that appears on
// several lines (identityfile, certificatefile, sendenv, …) keeps every value
// in order. Output without a hostname line is not ssh -G output.
func ParseSSHG(out []byte) (map[string][]string, error) {
	m := make(map[string][]string)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, val, _ := strings.Cut(line, " ")
		if !validKey(key) {
			return nil, fmt.Errorf("ssh -G output line %d: %q is not a \"key value\" line", n, truncate(line, 60))
		}
		key = strings.ToLower(key)
		m[key] = append(m[key], val)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ssh -G output: %w", err)
	}
	if len(m["hostname"]) == 0 {
		return nil, errors.New("ssh -G output has no hostname line (is this OpenSSH's ssh?)")
	}
	return m, nil
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// errNotOpenSSH marks an ssh that does not speak OpenSSH's -G.
var errNotOpenSSH = errors.New("this ssh is not OpenSSH's; install OpenSSH or set GOPYK_SSH_CONFIG_BACKEND=builtin")

// autoBackend uses ssh -G and falls back to the built-in reader only when
// the ssh on PATH turns out not to be OpenSSH; config errors stay errors.
type autoBackend struct {
	openssh opensshBackend
	builtin backend
}

func (a autoBackend) name() string { return "openssh" }

func (a autoBackend) lookup(ctx context.Context, host, user string, port int, jump string) (map[string][]string, error) {
	m, err := a.openssh.lookup(ctx, host, user, port, jump)
	if errors.Is(err, errNotOpenSSH) {
		return a.builtin.lookup(ctx, host, user, port, jump)
	}
	return m, err
}

// opensshBackend asks the real ssh for its evaluated config, so Match,
// Include, tokens and defaults behave exactly as they will for the user's ssh.
type opensshBackend struct {
	ssh        string   // path of the ssh binary
	configFile string   // -F, or "" for ssh's own files
	env        []string // added to the environment of ssh (tests: nss_wrapper)
}

func (b opensshBackend) name() string { return "openssh" }

func (b opensshBackend) lookup(parent context.Context, host, user string, port int, jump string) (map[string][]string, error) {
	ctx, cancel := context.WithTimeout(parent, sshGTimeout)
	defer cancel()
	var args []string
	if b.configFile != "" {
		args = append(args, "-F", b.configFile)
	}
	args = append(args, "-G")
	if user != "" {
		args = append(args, "-l", user)
	}
	if port > 0 {
		args = append(args, "-p", strconv.Itoa(port))
	}
	if jump != "" {
		args = append(args, "-J", jump)
	}
	args = append(args, "--", host)
	cmd := exec.CommandContext(ctx, b.ssh, args...)
	cmd.Stdin = nil // /dev/null: a Match exec must not read our stdin
	cmd.Env = append(append(os.Environ(), b.env...), "LC_ALL=C")
	// A Match exec child may outlive ssh and keep the pipes open: ssh gets
	// its own process group and a timeout kills the whole group.
	ownProcessGroup(cmd)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err := parent.Err(); err != nil {
		return nil, fmt.Errorf("%s -G %s: %w", b.ssh, host, err)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s -G %s: no answer within %s (a Match exec in %s may hang); fix the config or set GOPYK_SSH_CONFIG_BACKEND=builtin",
			b.ssh, host, sshGTimeout, b.configDesc())
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() != 255 {
			// OpenSSH exits 255 on every config error; anything else is a
			// different ssh (dropbear, busybox) that has no -G.
			return nil, fmt.Errorf("%s -G %s: exit %d (%s): %w", b.ssh, host, ee.ExitCode(), firstLine(stderr.String()), errNotOpenSSH)
		}
		if errors.As(err, &ee) {
			msg := firstLine(stderr.String())
			if msg == "" {
				msg = "no message"
			}
			return nil, fmt.Errorf("%s -G %s failed (exit %d): %q; fix %s (try: ssh %s)",
				b.ssh, host, ee.ExitCode(), msg, b.configDesc(), strings.Join(args, " "))
		}
		return nil, fmt.Errorf("run %s -G %s: %w; install OpenSSH's ssh or set GOPYK_SSH_CONFIG_BACKEND=builtin", b.ssh, host, err)
	}
	m, err := ParseSSHG(stdout.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s -G %s: %v: %w", b.ssh, host, err, errNotOpenSSH)
	}
	return m, nil
}

func (b opensshBackend) configDesc() string {
	if b.configFile != "" {
		return "the ssh config file " + b.configFile
	}
	return "your ssh config (~/.ssh/config, /etc/ssh/ssh_config)"
}

// firstLine is ssh's first meaningful stderr line; the pseudo-terminal note
// Debian's ssh prints without -T is noise.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "Pseudo-terminal will not be allocated") {
			continue
		}
		return l
	}
	return ""
}
