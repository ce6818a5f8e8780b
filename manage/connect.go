package manage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/master"
	"github.com/gopyk/gopyk/sshconf"
	"github.com/urfave/cli/v3"
)

func (a *App) connectCommand() *cli.Command {
	return &cli.Command{
		Name:  "connect",
		Usage: "log in to a host once (password, verification code) and keep the connection for its kernels",
		UsageText: "gopyk connect [--ssh-config F] [--persist SECONDS] HOST   log in on this terminal, keep the connection in the background\n" +
			"gopyk connect --kernel-name NAME                       the host of a kernel spec\n" +
			"gopyk connect --status [HOST]                          the masters that run (every one without HOST)\n" +
			"gopyk connect --stop HOST                              end the master (its kernels reconnect)\n\n" +
			"Every kernel and gopyk list of a host share one connection, held by a gopyk master in the background\n" +
			"(Unix). The first kernel starts it without asking anyone; a host that wants a password or a code needs\n" +
			"gopyk connect first, on a terminal.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagSSHConfig, Usage: "ssh config `FILE` (ssh -F), as the kernel spec's --ssh-config"},
			&cli.StringFlag{Name: flagKernelName, Usage: "connect to the host of the kernel spec `NAME` (its alias, ssh config and master persist time)"},
			&cli.IntFlag{Name: "persist", HideDefault: true, Usage: "`SECONDS` the master stays once its last kernel ended (default: the spec's master_persist, ControlPersist of the host, else " + fmt.Sprint(kernelspec.DefaultMasterPersist) + "; -1: until --stop)"},
			&cli.BoolFlag{Name: "status", Usage: "show the masters that run, or the one of HOST"},
			&cli.BoolFlag{Name: "stop", Usage: "end the master of HOST"},
		},
		Action: a.runConnect,
	}
}

func (a *App) runConnect(ctx context.Context, cmd *cli.Command) error {
	status, stop := cmd.Bool("status"), cmd.Bool("stop")
	if status && stop {
		return usagef("--status and --stop both given; give one")
	}
	if cmd.NArg() > 1 {
		return usagef("give one HOST (see 'gopyk connect --help')")
	}
	host := cmd.Args().First()
	if status && host == "" && !cmd.IsSet(flagKernelName) {
		return a.statusAll(ctx)
	}
	route, g, err := a.connectTarget(ctx, cmd, host)
	if err != nil {
		return err
	}
	alias := route.Target().Alias
	path, err := master.SocketPath(route)
	if err != nil {
		return err
	}
	switch {
	case status:
		in, err := master.Status(ctx, path)
		if errors.Is(err, master.ErrNoMaster) {
			return fmt.Errorf("no master runs for %s; gopyk connect %s starts one", alias, alias)
		}
		if err != nil {
			return err
		}
		a.printStatus(in)
		return nil
	case stop:
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		in, _ := master.Status(sctx, path)
		err := master.Stop(sctx, path)
		if errors.Is(err, master.ErrNoMaster) {
			fmt.Fprintf(a.Stdout, "No master runs for %s.\n", alias)
			return nil
		}
		if err != nil {
			return err
		}
		users := ""
		if in.Users > 0 {
			users = fmt.Sprintf(" (%d users; their kernels reconnect)", in.Users)
		}
		fmt.Fprintf(a.Stdout, "Stopped the master of %s, pid %d%s.\n", alias, in.PID, users)
		return nil
	}
	persist := master.Persist(g, route.Target())
	if cmd.IsSet("persist") {
		persist = time.Duration(cmd.Int("persist")) * time.Second
		if cmd.Int("persist") < 0 {
			persist = -1
		}
	}
	if in, err := master.Status(ctx, path); err == nil && in.Connected {
		fmt.Fprintf(a.Stdout, "Already connected to %s (master pid %d, connected since %s).\n", alias, in.PID, in.Since.Local().Format("15:04:05"))
		return nil
	} else if err == nil {
		// It runs but cannot log in again (a password nobody can type in
		// the background): this terminal can.
		a.log.Info("replacing a master that is not connected", "pid", in.PID, "last_error", in.LastError)
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := master.Stop(sctx, path)
		cancel()
		if err != nil && !errors.Is(err, master.ErrNoMaster) {
			return err
		}
	}
	link := time.Duration(g.LinkTimeout) * time.Second
	if link <= 0 {
		link = kernelspec.DefaultLinkTimeout * time.Second
	}
	// Up to 10 minutes for a person to type a password or find a code.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if _, err := master.Ensure(cctx, route, master.Options{Alias: alias, Persist: persist, DeadAfter: link, Interactive: true, Log: a.log}); err != nil {
		return err
	}
	in, err := master.Status(ctx, path)
	if err != nil {
		return err
	}
	keep := "until gopyk connect --stop " + alias
	if persist >= 0 {
		keep = fmt.Sprintf("for %v after its last kernel ends", persist)
	}
	fmt.Fprintf(a.Stdout, "Connected to %s (%s): kernels and gopyk list of this host use this connection; the master (pid %d) keeps it %s.\n",
		alias, in.Target, in.PID, keep)
	return nil
}

// connectTarget resolves HOST, or the host of --kernel-name's spec.
func (a *App) connectTarget(ctx context.Context, cmd *cli.Command, host string) (sshconf.Route, kernelspec.Gopyk, error) {
	var g kernelspec.Gopyk
	if name := cmd.String(flagKernelName); name != "" {
		if host != "" {
			return nil, g, usagef("give HOST or --kernel-name, not both")
		}
		s, err := kernelspec.Find(name)
		if err != nil {
			return nil, g, fmt.Errorf("%w; run 'gopyk list' to see the kernel specs", err)
		}
		if s.Gopyk == nil {
			return nil, g, fmt.Errorf("kernel spec %q was not written by gopyk: it has no host", name)
		}
		g = *s.Gopyk
	} else {
		if host == "" {
			return nil, g, usagef("give the HOST to connect to, an alias of your ssh config (see 'gopyk connect --help')")
		}
		if err := checkAlias(host); err != nil {
			return nil, g, usageError{err}
		}
		g.SSHHostAlias = host
		if cmd.IsSet(flagSSHConfig) {
			p, err := sshConfigPath(cmd.String(flagSSHConfig))
			if err != nil {
				return nil, g, err
			}
			g.SSHConfig = p
		}
	}
	route, err := sshconf.Resolve(ctx, g.SSHHostAlias, sshconf.Options{ConfigFile: g.SSHConfig})
	if err != nil {
		return nil, g, err
	}
	return route, g, nil
}

// statusAll shows every master of this user.
func (a *App) statusAll(ctx context.Context) error {
	dir, err := master.Dir()
	if err != nil {
		return err
	}
	socks, _ := filepath.Glob(filepath.Join(dir, "m-*"))
	sort.Strings(socks)
	n := 0
	for _, s := range socks {
		if strings.Contains(filepath.Base(s), ".") {
			continue // the lock, the log
		}
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		in, err := master.Status(sctx, s)
		cancel()
		if errors.Is(err, master.ErrNoMaster) {
			continue
		}
		if err != nil {
			fmt.Fprintf(a.Stdout, "%s: %v\n", s, err)
			continue
		}
		a.printStatus(in)
		n++
	}
	if n == 0 {
		fmt.Fprintln(a.Stdout, "No master runs.")
	}
	return nil
}

func (a *App) printStatus(in master.Info) {
	state := "connected since " + in.Since.Local().Format("2006-01-02 15:04:05")
	if !in.Connected {
		state = "not connected"
		if in.LastError != "" {
			state += ": " + oneLine(in.LastError)
		}
	}
	use := fmt.Sprintf("%d in use", in.Users)
	if in.Users == 0 {
		use = fmt.Sprintf("unused for %s", (time.Duration(in.IdleFor) * time.Second).Round(time.Second))
		if in.Persist >= 0 {
			use += fmt.Sprintf(" (exits after %s)", time.Duration(in.Persist*float64(time.Second)))
		}
	}
	fmt.Fprintf(a.Stdout, "%s (%s): %s; %s; %d logins; pid %d, socket %s\n", in.Alias, in.Target, state, use, in.Dials, in.PID, in.Socket)
}
