package sshconf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strings"
)

// maxJumpDepth bounds ProxyJump recursion; real chains are 1–3 hops, so
// anything deeper is a loop ssh itself would spin on.
const maxJumpDepth = 16

// backend produces the ssh -G view (lower-case key → values) of one host,
// as ssh would see it when run as `ssh [-l user] [-p port] [-J jump] host`.
type backend interface {
	name() string
	lookup(ctx context.Context, host, user string, port int, jump string) (map[string][]string, error)
}

// localEnv is what ssh takes from the local machine: the passwd entry (ssh
// uses pw_dir, not $HOME), the host name and the environment.
type localEnv struct {
	home, user, uid, hostname string
	lookupEnv                 func(string) (string, bool)
}

func currentLocalEnv() (localEnv, error) {
	l := localEnv{lookupEnv: os.LookupEnv}
	if u, err := user.Current(); err == nil {
		l.home, l.user, l.uid = u.HomeDir, userName(u), u.Uid
	} else {
		l.home, l.user, l.uid = os.Getenv("HOME"), os.Getenv("USER"), fmt.Sprint(os.Getuid())
	}
	if l.home == "" {
		return l, errors.New("cannot find the local home directory (no passwd entry and no $HOME)")
	}
	h, err := os.Hostname()
	if err != nil {
		return l, fmt.Errorf("local host name: %w", err)
	}
	l.hostname = h
	return l, nil
}

// Resolve turns a host alias into the route to dial: every ProxyJump hop
// first, in dial order, the target last, each with its own settings — the
// chain ssh itself would build. For `ProxyJump A,B` on T the route is A, B, T:
// B is reached through A (the chain given to T overrides B's own ProxyJump, as
// ssh -J does), while A's own ProxyJump, if any, still applies and recurses.
func Resolve(ctx context.Context, alias string, opts Options) (Route, error) {
	r, err := newResolver(opts)
	if err != nil {
		return nil, err
	}
	return r.resolve(ctx, alias)
}

type resolver struct {
	be    backend
	local localEnv
}

func newResolver(opts Options) (*resolver, error) {
	// "-F none" is ssh's way to read no config file at all.
	if opts.ConfigFile != "" && opts.ConfigFile != "none" {
		if _, err := os.Stat(opts.ConfigFile); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("ssh config file %s not found; fix the path with gopyk edit --ssh-config or --unset ssh_config", opts.ConfigFile)
			}
			return nil, fmt.Errorf("ssh config file %s: %w", opts.ConfigFile, err)
		}
	}
	local, err := currentLocalEnv()
	if err != nil {
		return nil, err
	}
	be, err := chooseBackend(opts, local)
	if err != nil {
		return nil, err
	}
	return &resolver{be: be, local: local}, nil
}

func chooseBackend(opts Options, local localEnv) (backend, error) {
	name := opts.Backend
	if name == "" {
		name = os.Getenv("GOPYK_SSH_CONFIG_BACKEND")
	}
	sshName := opts.SSHPath
	if sshName == "" {
		sshName = "ssh"
	}
	switch strings.ToLower(name) {
	case "", "auto":
		if p, err := exec.LookPath(sshName); err == nil {
			return autoBackend{openssh: opensshBackend{ssh: p, configFile: opts.ConfigFile}, builtin: newBuiltin(opts.ConfigFile, local)}, nil
		}
		return newBuiltin(opts.ConfigFile, local), nil
	case "openssh":
		p, err := exec.LookPath(sshName)
		if err != nil {
			return nil, fmt.Errorf("ssh config backend openssh: %w; install OpenSSH's ssh or set GOPYK_SSH_CONFIG_BACKEND=builtin", err)
		}
		return opensshBackend{ssh: p, configFile: opts.ConfigFile}, nil
	case "builtin":
		return newBuiltin(opts.ConfigFile, local), nil
	}
	return nil, fmt.Errorf("unknown ssh config backend %q; use auto, openssh or builtin (GOPYK_SSH_CONFIG_BACKEND)", name)
}

func (r *resolver) resolve(ctx context.Context, alias string) (Route, error) {
	if err := checkHost(alias); err != nil {
		return nil, fmt.Errorf("host alias %q: %w", alias, err)
	}
	return r.chain(ctx, Jump{Host: alias}, nil, nil)
}

// chain resolves hop and everything needed to reach it. via, when not nil, is
// the jump chain imposed by the host after it (ssh -J semantics); otherwise
// the hop's own ProxyJump applies. stack holds the hops being resolved, to
// name a cycle.
func (r *resolver) chain(ctx context.Context, hop Jump, via []Jump, stack []Jump) (Route, error) {
	if err := checkStack(stack, hop); err != nil {
		return nil, err
	}
	stack = append(stack[:len(stack):len(stack)], hop)
	s, err := r.settings(ctx, hop, via)
	if err != nil {
		if len(stack) > 1 {
			return nil, fmt.Errorf("jump host %s (for %s): %w", hop, stack[0].Host, err)
		}
		return nil, err
	}
	jumps := via
	if jumps == nil {
		if jumps, err = ParseJump(s.ProxyJump); err != nil {
			return nil, fmt.Errorf("host %s: %w", hop.Host, err)
		}
	}
	if len(jumps) == 0 {
		return Route{s}, nil
	}
	// The first hop is reached by its own config; each later hop through the
	// hops before it, exactly as ssh's `ssh -J <earlier> -W … <hop>`.
	route, err := r.chain(ctx, jumps[0], nil, stack)
	if err != nil {
		return nil, err
	}
	for i := 1; i < len(jumps); i++ {
		if err := checkStack(stack, jumps[i]); err != nil {
			return nil, err
		}
		hs, err := r.settings(ctx, jumps[i], jumps[:i:i])
		if err != nil {
			return nil, fmt.Errorf("jump host %s (for %s): %w", jumps[i], stack[0].Host, err)
		}
		route = append(route, hs)
	}
	return append(route, s), nil
}

func checkStack(stack []Jump, hop Jump) error {
	for _, s := range stack {
		if s == hop {
			return fmt.Errorf("ProxyJump loop: %s; fix the ProxyJump lines of these hosts", cycleString(append(stack, hop)))
		}
	}
	if len(stack) >= maxJumpDepth {
		return fmt.Errorf("ProxyJump chain deeper than %d hops: %s; fix the ProxyJump lines", maxJumpDepth, cycleString(append(stack, hop)))
	}
	return nil
}

func cycleString(stack []Jump) string {
	parts := make([]string, len(stack))
	for i, s := range stack {
		parts[i] = s.String()
	}
	return strings.Join(parts, " -> ")
}

// settings resolves one host as `ssh [-l user] [-p port] [-J via] host`.
func (r *resolver) settings(ctx context.Context, hop Jump, via []Jump) (*Settings, error) {
	// -J on the command line beats the hop's own ProxyJump and ProxyCommand
	// (and keeps ssh from calling "Host * / ProxyJump bastion" a loop there).
	jump := ""
	if via != nil {
		jump = joinJumps(via)
	}
	raw, err := r.be.lookup(ctx, hop.Host, hop.User, hop.Port, jump)
	if err != nil {
		return nil, err
	}
	if via != nil {
		raw["proxyjump"] = []string{jump}
		delete(raw, "proxycommand")
	}
	return settingsFromRaw(hop.Host, raw, &r.local)
}
