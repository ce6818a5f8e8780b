package wine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// bootDeadline bounds creating a prefix (about 2 s on a idle machine).
const bootDeadline = 3 * time.Minute

// Prefix is a wine prefix (a Windows installation) of its own.
type Prefix struct {
	Dir  string
	wine string
}

// Binary is the wine loader: `wine` on the PATH (Debian's wine package), else
// wine64's own.
func Binary() (string, error) {
	for _, p := range []string{"wine", "wine64", "/usr/lib/wine/wine64"} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", errors.New("wine not found; install Debian's wine and wine64 (make setup)")
}

// New makes a prefix in dir (which must not exist yet) that runs Go programs.
//
// Debian's wine 8.0 once failed the first boot of a fresh prefix, after
// populating it, with "could not load kernel32.dll, status c0000135"
// (STATUS_DLL_NOT_FOUND; one make test run in ~16, on a loaded machine;
// not reproduced with three prefixes booting at once). That one failure is
// met with a second fresh prefix in the same dir; any other is returned.
func New(ctx context.Context, dir string) (*Prefix, error) {
	ctx, cancel := context.WithTimeout(ctx, bootDeadline)
	defer cancel()
	p, err := boot(ctx, dir)
	if err != nil && strings.Contains(err.Error(), "could not load kernel32.dll") && ctx.Err() == nil {
		p, err = boot(ctx, dir)
	}
	return p, err
}

func boot(ctx context.Context, dir string) (*Prefix, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	p := &Prefix{Dir: dir, wine: bin}
	// One wineserver for the prefix's life, started with no pipes to
	// inherit: one a wine program starts would hold that program's output
	// open after it exits.
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("wine prefix: %w", err)
	}
	server := exec.CommandContext(ctx, "wineserver", "--persistent")
	server.Env = p.Env(os.Environ())
	if err := server.Run(); err != nil { // it forks and returns
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start wineserver for %s: %w", dir, err)
	}
	// wineboot starts wine's services, which live as long as the server:
	// its output goes to a file, not a pipe they would inherit.
	log, err := os.CreateTemp("", "gopyk-wineboot-")
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("wine prefix: %w", err)
	}
	defer os.Remove(log.Name())
	defer log.Close()
	wb := p.Command(ctx, "wineboot", "--init")
	wb.Stdout, wb.Stderr = log, log
	if err := wb.Run(); err != nil {
		out, _ := os.ReadFile(log.Name())
		p.Close()
		return nil, fmt.Errorf("create the wine prefix %s: %v: %s", dir, err, strings.TrimSpace(string(out)))
	}
	dll := filepath.Join(dir, "drive_c", "windows", "system32", "bcryptprimitives.dll")
	if err := os.WriteFile(dll, forwarderDLL("bcryptprimitives.dll", "ProcessPrng", "advapi32.SystemFunction036"), 0o644); err != nil {
		p.Close()
		return nil, fmt.Errorf("wine prefix: %w", err)
	}
	return p, nil
}

// Env is the environment a program run in the prefix gets: base without
// DISPLAY and with the prefix's variables.
func (p *Prefix) Env(base []string) []string {
	var env []string
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DISPLAY", "WAYLAND_DISPLAY", "WINEPREFIX", "WINEDEBUG", "WINEDLLOVERRIDES":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "WINEPREFIX="+p.Dir, "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=")
}

// Command runs a Windows program (an .exe path or a wine built-in) in the prefix.
func (p *Prefix) Command(ctx context.Context, exe string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, p.wine, append([]string{exe}, args...)...)
	cmd.Env = p.Env(os.Environ())
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// CommandLine is Command as a sh command line, for ssh's ProxyCommand.
func (p *Prefix) CommandLine(exe string, args ...string) string {
	w := []string{"env", "-u", "DISPLAY", "WINEPREFIX=" + p.Dir, "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=", p.wine, exe}
	w = append(w, args...)
	for i, a := range w {
		w[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(w, " ")
}

// WindowsPath is the path a Windows program under wine sees for a local
// file: wine's drive Z: is /.
func WindowsPath(unixPath string) string {
	return "Z:" + strings.ReplaceAll(unixPath, "/", `\`)
}

// Close stops the prefix's wineserver and removes the prefix.
func (p *Prefix) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kill := exec.CommandContext(ctx, "wineserver", "-k")
	kill.Env = p.Env(os.Environ())
	kill.Run() // no server running is fine
	return os.RemoveAll(p.Dir)
}
