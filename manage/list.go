package manage

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/sshconf"
	"github.com/gopyk/gopyk/transport"
	"github.com/gopyk/gopyk/wsproxy"
	"github.com/urfave/cli/v3"
)

func (a *App) listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list kernel specs and check the SSH ones",
		UsageText: "gopyk list [-r|--remote] [-l|--local] [-n|--no-check] [--launch NAME] [--json]",
		Description: "Exits 1 when any line is an (x) (or a kernel.json cannot be read), 0 otherwise.\n" +
			"--launch NAME checks only that spec, then launches it for real, runs one cell and shuts it down, timing each step.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "remote", Aliases: []string{"r"}, Usage: "show SSH kernels (default: both kinds)"},
			&cli.BoolFlag{Name: "local", Aliases: []string{"l"}, Usage: "show local kernels (default: both kinds)"},
			&cli.BoolFlag{Name: "no-check", Aliases: []string{"n"}, Usage: "do not contact the remote hosts (the local ssh config is still read)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON document"},
			&cli.StringFlag{Name: "launch", Usage: "check only the SSH kernel spec `NAME`, then launch it, run one cell and shut it down"},
		},
		UseShortOptionHandling: true,
		Action:                 a.runList,
	}
}

func (a *App) runList(ctx context.Context, cmd *cli.Command) error {
	if cmd.Args().Present() {
		return usagef("unexpected argument %q; list takes only flags (see 'gopyk list --help')", cmd.Args().First())
	}
	showLocal, showSSH := cmd.Bool("local"), cmd.Bool("remote")
	if !showLocal && !showSSH {
		showLocal, showSSH = true, true
	}
	a.log.Info("kernel spec search path", "dirs", kernelspec.Path())

	specs, errs := kernelspec.All()
	launch := cmd.String("launch")
	if launch != "" {
		if cmd.Bool("no-check") {
			return usagef("--launch and --no-check contradict each other; drop one")
		}
		var found *kernelspec.Spec
		for _, s := range specs {
			if strings.EqualFold(s.Name, launch) {
				found = s
			}
		}
		switch {
		case found == nil:
			return fmt.Errorf("--launch %s: no kernel spec of that name; 'gopyk list' shows them", launch)
		case found.Gopyk == nil:
			return fmt.Errorf("--launch %s: %s is not a gopyk (SSH) kernel spec", launch, found.File())
		}
		specs, errs, showLocal, showSSH = []*kernelspec.Spec{found}, nil, false, true
	}
	rep := listReport{Failed: []string{}, Kernels: []kernelReport{}, Errors: []string{}}
	for _, err := range errs {
		name := "NAME"
		if se, ok := err.(*kernelspec.SpecError); ok {
			name = se.Name
		}
		rep.Errors = append(rep.Errors, err.Error()+"; fix the file, or delete it with 'gopyk delete --force "+name+"'")
	}
	// Local kernels first, then SSH ones, each sorted by name (as sshpyk).
	for _, s := range specs {
		if s.Gopyk == nil && showLocal {
			rep.Kernels = append(rep.Kernels, localReport(s))
		}
	}
	// SSH specs are checked in parallel, each under its own deadline, over
	// one connection per host.
	checks := a.RemoteChecks
	if checks == nil {
		rc := newRemoteChecker()
		defer rc.close()
		checks = rc.check
	}
	var ssh []*kernelspec.Spec
	for _, s := range specs {
		if s.Gopyk != nil && showSSH {
			ssh = append(ssh, s)
		}
	}
	reports := make([]kernelReport, len(ssh))
	var wg sync.WaitGroup
	for i, s := range ssh {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i] = a.sshKernelReport(ctx, s, cmd.Bool("no-check"), checks)
		}()
	}
	wg.Wait()
	if launch != "" && len(reports) == 1 {
		sr := reports[0].SSH
		if reports[0].failed() {
			sr.Launch = &Check{Label: "Launch", Status: StatusUnknown, Message: "not tried: fix the lines marked (x) first"}
		} else {
			c, steps := a.trialLaunch(ctx, ssh[0])
			sr.Launch, sr.LaunchSteps = &c, steps
		}
	}
	rep.Kernels = append(rep.Kernels, reports...)
	rep.OK = len(rep.Errors) == 0
	for _, k := range rep.Kernels {
		if k.failed() {
			rep.OK = false
			rep.Failed = append(rep.Failed, k.Name)
		}
	}
	if cmd.Bool("json") {
		enc := json.NewEncoder(a.Stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		for _, e := range rep.Errors {
			a.warn("%s", e)
		}
		newPrinter(a.Stdout, useColor(a.Stdout)).print(rep)
	}
	return rep.verdict()
}

// verdict is the error that makes `gopyk list` exit 1, or nil.
func (rep listReport) verdict() error {
	var parts []string
	if n := len(rep.Failed); n > 0 {
		parts = append(parts, fmt.Sprintf("%d kernel spec(s) with an (x): %s; the lines marked (x) say what to fix", n, strings.Join(rep.Failed, ", ")))
	}
	if n := len(rep.Errors); n > 0 {
		parts = append(parts, fmt.Sprintf("%d kernel.json file(s) cannot be read (see the warnings)", n))
	}
	if len(parts) == 0 {
		return nil
	}
	return errors.New(strings.Join(parts, "; "))
}

// useColor: only on a terminal, and never when NO_COLOR is set (no-color.org).
func useColor(w any) bool {
	return os.Getenv("NO_COLOR") == "" && isTerminal(w)
}

func localReport(s *kernelspec.Spec) kernelReport {
	mode := s.InterruptMode
	if mode == "" {
		mode = "signal"
	}
	return kernelReport{
		Name: s.Name, Kind: "local", DisplayName: s.DisplayName, ResourceDir: s.Dir,
		SpecFile: s.File(), Argv: nonNil(s.Argv), Language: s.Language, InterruptMode: mode,
	}
}

func (a *App) sshKernelReport(ctx context.Context, s *kernelspec.Spec, noCheck bool, checks RemoteChecks) kernelReport {
	r := localReport(s)
	r.Kind = "ssh"
	g := *s.Gopyk
	sr := &sshReport{Settings: g, Command: simplifiedCommand(g)}
	r.SSH = sr

	sr.InterruptMode = Check{Status: StatusOK, Message: r.InterruptMode}
	if r.InterruptMode != "signal" {
		sr.InterruptMode = Check{Status: StatusWarning, Message: r.InterruptMode +
			"; gopyk-kernel expects signal (Jupyter then signals it, and it interrupts the remote kernel); fix interrupt_mode in " + s.File()}
	}
	sr.LaunchTimeout, sr.ShutdownTimeout = g.LaunchTimeout, g.ShutdownTimeout
	if sr.LaunchTimeout == 0 {
		sr.LaunchTimeout = kernelspec.DefaultLaunchTimeout
	}
	if sr.ShutdownTimeout == 0 {
		sr.ShutdownTimeout = kernelspec.DefaultShutdownTimeout
	}
	sr.Grace, sr.ReconnectTimeout = cmp.Or(g.Grace, kernelspec.DefaultGrace), cmp.Or(g.ReconnectTimeout, kernelspec.DefaultReconnectTimeout)
	sr.Launcher = g.Launcher
	if sr.Launcher == "" {
		sr.Launcher = "local"
	}
	if sr.Launcher == "slurm" {
		sr.QueueTimeout = g.QueueTimeout
		if sr.QueueTimeout == 0 {
			sr.QueueTimeout = kernelspec.DefaultQueueTimeout
		}
	}

	if g.SSHConfig != "" {
		sr.SSHConfig = &Check{Status: StatusOK, Message: g.SSHConfig}
		if !isFile(g.SSHConfig) {
			sr.SSHConfig = &Check{Status: StatusError, Message: g.SSHConfig +
				" not found; fix it with 'gopyk edit --kernel-name " + s.Name + " --ssh-config FILE' or '--unset ssh_config'"}
		}
	}
	var route sshconf.Route
	var err error
	if sr.SSHConfig != nil && sr.SSHConfig.Status == StatusError {
		err = fmt.Errorf("not resolved: the ssh config file %s is missing", g.SSHConfig)
	} else {
		route, err = sshconf.Resolve(ctx, g.SSHHostAlias, sshconf.Options{ConfigFile: g.SSHConfig})
	}
	if err != nil {
		a.log.Warn("resolve ssh host alias", "kernel", s.Name, "alias", g.SSHHostAlias, "err", err)
		sr.RouteError = &Check{Key: g.SSHHostAlias, Status: StatusError, Message: oneLine(err.Error())}
		sr.Route = []hostReport{}
		sr.Remote = unknownRemote("not checked: the ssh config for " + g.SSHHostAlias + " has an error")
		return r
	}
	for i, h := range route {
		sr.Route = append(sr.Route, hostChecks(ctx, h, i < len(route)-1))
	}
	sr.SSHClient = clientCheck(g, route.Target(), s.Name)
	switch {
	case noCheck:
		sr.Remote = unknownRemote("not checked (--no-check)")
	default:
		sr.Remote = checks(ctx, s, route)
	}
	return r
}

// simplifiedCommand shows what runs where, for a person; it is not the exact command.
func simplifiedCommand(g kernelspec.Gopyk) string {
	py := g.RemotePython
	if py == "" {
		py = "python3"
	}
	remote := py
	if g.RemotePre != "" {
		remote = g.RemotePre + "; " + py
	}
	return fmt.Sprintf("ssh %s %s  (remote kernel spec %s)", g.SSHHostAlias, shellQuote(remote), g.RemoteKernelName)
}

// clientCheck says which SSH client logs in, and warns where the native
// one cannot do what the config asks for.
func clientCheck(g kernelspec.Gopyk, t *sshconf.Settings, spec string) *Check {
	client, why := transport.Choose(g.SSHClient, t)
	p := t.Raw["pkcs11provider"]
	pkcs11 := len(p) > 0 && !strings.EqualFold(p[0], "none")
	if g.SSHClient == "" && !pkcs11 {
		return nil // the default, nothing to say
	}
	c := &Check{Status: StatusInfo, Message: client}
	if g.SSHClient == kernelspec.SSHClientAuto {
		c.Message = "auto: " + client + " (" + why + ")"
	}
	if client == kernelspec.SSHClientNative && pkcs11 {
		c.Status = StatusWarning
		c.Message += "; the config asks for PKCS11Provider " + p[0] + ", which only OpenSSH's ssh can use; fix: gopyk edit --kernel-name " + spec + " --ssh-client openssh"
	}
	return c
}

// hostChecks describes the settings gopyk takes from the ssh config of one hop.
func hostChecks(ctx context.Context, h *sshconf.Settings, jump bool) hostReport {
	hr := hostReport{
		Alias: h.Alias, Jump: jump, HostName: h.HostName, Port: h.Port, User: h.User,
		IdentityFiles: nonNil(h.IdentityFiles), ProxyJump: h.ProxyJump, ProxyCommand: h.ProxyCommand,
	}
	add := func(key string, st Status, msg string) {
		hr.Checks = append(hr.Checks, Check{Key: key, Status: st, Message: msg})
	}
	ws, isWS := wsproxy.ParseCommand(h.ProxyCommand)
	if isWS {
		// The WebSocket is the way in: HostName and Port are not dialled.
		// The URL's query may hold a token: the command is not shown.
		hr.WebSocket, hr.ProxyCommand = wsproxy.Redacted(ws.URL), ""
		add("websocket", StatusInfo, wsDescription(ws))
		for _, f := range ws.Files() {
			if err := wsproxy.CheckSecretFile(f[1], f[0]); err != nil {
				add("credentials", StatusError, err.Error())
			} else if !isFile(f[1]) {
				add("credentials", StatusError, f[0]+" "+f[1]+" does not exist; fix the ProxyCommand of "+h.Alias+" in your ssh config")
			}
		}
	} else {
		add("hostname", StatusInfo, h.HostName)
		add("port", StatusInfo, fmt.Sprint(h.Port))
	}
	add("user", StatusInfo, h.User)

	var existing []string
	for _, f := range h.IdentityFiles {
		if isFile(f) {
			existing = append(existing, f)
		}
	}
	switch {
	case len(existing) > 0:
		for _, f := range existing {
			add("identityfile", StatusOK, f)
		}
	case len(h.IdentityFiles) == 1:
		add("identityfile", StatusError, h.IdentityFiles[0]+" does not exist; fix IdentityFile for "+h.Alias+" in your ssh config")
	case len(h.IdentityFiles) > 1 && sshDefaults(h.IdentityFiles):
		add("identityfile", StatusInfo, "none configured and none of ssh's default keys (~/.ssh/id_*) exist; gopyk will use the ssh agent")
	case len(h.IdentityFiles) > 1:
		add("identityfile", StatusWarning, "none of "+strings.Join(h.IdentityFiles, ", ")+" exist; gopyk will use the ssh agent, or fix IdentityFile for "+h.Alias+" in your ssh config")
	}
	if h.ProxyJump != "" {
		add("proxyjump", StatusInfo, h.ProxyJump)
	}
	if h.ProxyCommand != "" && !isWS {
		add("proxycommand", StatusInfo, h.ProxyCommand)
	}
	for _, k := range []string{"controlmaster", "controlpersist"} {
		v := strings.Join(h.Raw[k], " ")
		switch strings.ToLower(v) {
		case "", "no", "false", "none":
			continue
		}
		add(k, StatusInfo, v)
	}
	if h.ControlPath != "" {
		st, msg := controlPathCheck(ctx, h, jump)
		add("controlpath", st, msg)
	}
	return hr
}

// controlPathCheck says whether an OpenSSH master answers at the host's
// ControlPath (a local socket: asked even with --no-check), which gopyk
// then goes through.
func controlPathCheck(ctx context.Context, h *sshconf.Settings, jump bool) (Status, string) {
	if jump {
		return StatusInfo, h.ControlPath + " (gopyk goes through a master of the target host, not of a jump host)"
	}
	if transport.MasterAlive(ctx, h) {
		return StatusOK, h.ControlPath + ": an OpenSSH master answers; gopyk goes through it (no new connection, no login)"
	}
	return StatusInfo, h.ControlPath + ": no master answers; `ssh -M -f -N " + h.Alias + "` opens one, which gopyk then goes through"
}

// sshDefaults reports whether files is the list ssh -G prints when no
// IdentityFile is configured.
func sshDefaults(files []string) bool {
	for _, f := range files {
		switch filepath.Base(f) {
		case "id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk", "id_xmss", "id_dsa":
		default:
			return false
		}
	}
	return true
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// shellQuote quotes s for display the way a user would type it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '_' || r == '-' || r == '=' || r == ':' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// wsDescription is how a `gopyk ws-proxy` host is reached, for a person:
// "via wss://hub/user/alice/sshd/ (token from ~/.hub-token)".
func wsDescription(o wsproxy.Options) string {
	var from []string
	for _, c := range []struct{ what, v string }{
		{"token from ", o.TokenFile}, {"token from $", o.TokenEnv},
		{"cookie from ", o.CookieFile}, {"headers from ", o.HeaderFile},
	} {
		if c.v != "" {
			from = append(from, c.what+c.v)
		}
	}
	if len(from) == 0 {
		from = []string{"no credentials"}
	}
	return "via " + wsproxy.Redacted(o.URL) + " (" + strings.Join(from, ", ") + ")"
}
