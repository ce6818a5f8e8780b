package manage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/urfave/cli/v3"
)

// The flags that describe a kernel, shared by add and edit.
const (
	flagKernelName   = "kernel-name"
	flagDisplayName  = "display-name"
	flagLanguage     = "language"
	flagAlias        = "ssh-host-alias"
	flagSSHConfig    = "ssh-config"
	flagRemotePython = "remote-python"
	flagRemoteKernel = "remote-kernel-name"
	flagRemotePre    = "remote-pre"
	flagLaunchTO     = "launch-timeout"
	flagShutdownTO   = "shutdown-timeout"
	flagTransport    = "transport"
	flagLauncher     = "launcher"
	flagLauncherArgs = "launcher-args"
	flagQueueTO      = "queue-timeout"
	flagGrace        = "grace"
	flagReconnectTO  = "reconnect-timeout"
	flagStreams      = "streams"
	flagLinkTO       = "link-timeout"
	flagNotices      = "connection-notices"
	flagMaster       = "master"
	flagMasterPer    = "master-persist"
	flagSSHClient    = "ssh-client"
	flagIOPubBacklog = "iopub-backlog"
)

// fieldFlags are the flags; add shows its defaults, edit has none (an edit
// changes only what is given).
func fieldFlags(withDefaults bool) []cli.Flag {
	def := func(d string) string {
		if !withDefaults {
			return ""
		}
		return " (default: " + d + ")"
	}
	return []cli.Flag{
		&cli.StringFlag{Name: flagDisplayName, Usage: "`NAME` shown in Jupyter's kernel picker" + def("<remote kernel> (<alias>)")},
		&cli.StringFlag{Name: flagLanguage, Usage: "`LANGUAGE` of the kernel" + def("python")},
		&cli.StringFlag{Name: flagAlias, Usage: "`HOST` alias from your ssh config (or a plain host name)"},
		&cli.StringFlag{Name: flagSSHConfig, Usage: "ssh config `FILE` to use instead of ~/.ssh/config (ssh -F)"},
		&cli.StringFlag{Name: flagRemotePython, Usage: "`PATH` of python on the remote" + def("python3 on the remote PATH, after --remote-pre")},
		&cli.StringFlag{Name: flagRemoteKernel, Usage: "kernel spec `NAME` on the remote" + def("python3")},
		&cli.StringFlag{Name: flagRemotePre, Usage: "shell `COMMANDS` run on the remote before the kernel, e.g. 'module load python'"},
		&cli.IntFlag{Name: flagLaunchTO, HideDefault: true, Usage: "`SECONDS` to wait for the remote kernel to start" + def(fmt.Sprint(kernelspec.DefaultLaunchTimeout))},
		&cli.IntFlag{Name: flagShutdownTO, HideDefault: true, Usage: "`SECONDS` to wait for a clean shutdown before the kernel is killed" + def(fmt.Sprint(kernelspec.DefaultShutdownTimeout))},
		&cli.StringFlag{Name: flagTransport, Usage: "`MODE` of the remote kernel's sockets: ipc (unix sockets) or tcp (127.0.0.1)" + def("ipc")},
		&cli.StringFlag{Name: flagLauncher, Usage: "`HOW` the remote starts the kernel: local (on the SSH host) or slurm (a batch job on a compute node; sockets are tcp)" + def("local")},
		&cli.StringFlag{Name: flagLauncherArgs, Usage: "`ARGS` for the launcher, split as sh would: for slurm, sbatch options, e.g. '--partition=gpu --time=4:00:00'"},
		&cli.IntFlag{Name: flagQueueTO, HideDefault: true, Usage: "`SECONDS` a Slurm job may wait in the queue before it is cancelled" + def(fmt.Sprint(kernelspec.DefaultQueueTimeout))},
		&cli.IntFlag{Name: flagGrace, HideDefault: true, Usage: "`SECONDS` the remote kernel waits for a gopyk-kernel that lost its connection, before it shuts down (not persistent kernels). The wait starts once the remote side takes the connection for lost: 15 s after the network went silent (3 missed lease pings), or at once when gopyk-kernel exits; a killed gopyk-kernel: 4 s" + def(fmt.Sprint(kernelspec.DefaultGrace))},
		&cli.IntFlag{Name: flagReconnectTO, HideDefault: true, Usage: "`SECONDS` gopyk-kernel keeps reconnecting after the network drops before it gives up and exits" + def(fmt.Sprint(kernelspec.DefaultReconnectTimeout))},
		&cli.IntFlag{Name: flagLinkTO, HideDefault: true, Usage: "`SECONDS` the SSH connection may stay silent before gopyk-kernel takes it for lost and dials a new one, whatever ServerAliveInterval says (ssh -G reports 300 under BatchMode yes)" + def(fmt.Sprint(kernelspec.DefaultLinkTimeout))},
		&cli.StringFlag{Name: flagNotices, Usage: "`ON|OFF`: while the connection is lost, tell each running cell under its output (connection lost, reconnected)" + def("on")},
		&cli.StringFlag{Name: flagMaster, Usage: "`ON|OFF`: share one SSH connection per host between every kernel and gopyk list, held by a gopyk master in the background (Unix; `gopyk connect --status` shows them)" + def("on")},
		&cli.IntFlag{Name: flagMasterPer, HideDefault: true, Usage: "`SECONDS` the host's master stays once its last kernel ended, so the next launch need not log in" + def(fmt.Sprint(kernelspec.DefaultMasterPersist)+", or ControlPersist of the host's ssh config")},
		&cli.StringFlag{Name: flagSSHClient, Usage: "`CLIENT` that logs in: native (gopyk's own), openssh (your ssh, once per connection: Kerberos/GSSAPI, PKCS#11, every ssh_config feature) or auto (openssh where native cannot log in); a live ControlMaster at the host's ControlPath is used by all" + def("native")},
		&cli.IntFlag{Name: flagIOPubBacklog, HideDefault: true, Usage: "`MIB` of output the remote holds for a link slower than the kernel (in memory, then in a file of its run dir); beyond, the remote stops reading the kernel's output, which the kernel may drop, and the running cells say so" + def(fmt.Sprint(kernelspec.DefaultIOPubBacklog))},
		&cli.StringFlag{Name: flagStreams, Usage: "`HOW` the kernel's streams reach the remote: forward (SSH forwarding to a unix socket), session (one exec session carries them all, for servers that refuse forwarding) or auto (forward, else session)" + def("auto")},
	}
}

var aliasPattern = regexp.MustCompile(`^[A-Za-z0-9._][A-Za-z0-9._-]*$`)

func checkAlias(alias string) error {
	const fix = "use the name of a Host entry in your ssh config or a host name (letters, digits, '.', '_', '-')"
	switch {
	case alias == "":
		return errors.New("empty --ssh-host-alias; " + fix)
	case strings.Contains(alias, "@"):
		return fmt.Errorf("invalid ssh host alias %q: user@host is not an alias; put User in a Host entry of your ssh config and give its name", alias)
	case !aliasPattern.MatchString(alias):
		return fmt.Errorf("invalid ssh host alias %q; %s", alias, fix)
	}
	return nil
}

func checkKernelName(flag, name string) error {
	if err := kernelspec.ValidName(name); err != nil {
		return fmt.Errorf("--%s: %w", flag, err)
	}
	return nil
}

// sshConfigPath checks that the file exists and returns it absolute, with a
// leading ~ expanded (the shell does not expand --ssh-config=~/x).
func sshConfigPath(p string) (string, error) {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("expand %s: %w", p, err)
		}
		p = filepath.Join(home, p[1:])
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("ssh config file %s: %w", p, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("ssh config file %s not found; give an existing file to --ssh-config, or leave it out to use ~/.ssh/config", abs)
	case err != nil:
		return "", fmt.Errorf("ssh config file %s: %w", abs, err)
	case fi.IsDir():
		return "", fmt.Errorf("ssh config file %s is a directory; give the config file itself to --ssh-config", abs)
	}
	return abs, nil
}

func checkTimeout(flag string, v int) error {
	if v <= 0 {
		return fmt.Errorf("--%s %d: give a positive number of seconds", flag, v)
	}
	return nil
}

func checkTransport(t string) error {
	if t != "ipc" && t != "tcp" {
		return fmt.Errorf("--transport %q: use ipc or tcp", t)
	}
	return nil
}

// applyFields copies the flags that were given into the spec, validating
// each. Only set flags are applied, so edit changes nothing else.
func applyFields(cmd *cli.Command, s *kernelspec.Spec) error {
	g := s.Gopyk
	if cmd.IsSet(flagDisplayName) {
		s.DisplayName = cmd.String(flagDisplayName)
		if strings.TrimSpace(s.DisplayName) == "" {
			return errors.New("empty --display-name; give the name Jupyter should show")
		}
	}
	if cmd.IsSet(flagLanguage) {
		s.Language = cmd.String(flagLanguage)
		if strings.TrimSpace(s.Language) == "" {
			return errors.New("empty --language; give the kernel's language, e.g. python")
		}
	}
	if cmd.IsSet(flagAlias) {
		g.SSHHostAlias = cmd.String(flagAlias)
		if err := checkAlias(g.SSHHostAlias); err != nil {
			return err
		}
	}
	if cmd.IsSet(flagRemoteKernel) {
		g.RemoteKernelName = cmd.String(flagRemoteKernel)
		if err := checkKernelName(flagRemoteKernel, g.RemoteKernelName); err != nil {
			return err
		}
	}
	if cmd.IsSet(flagRemotePython) {
		g.RemotePython = cmd.String(flagRemotePython)
		if strings.TrimSpace(g.RemotePython) == "" || strings.ContainsAny(g.RemotePython, "\n\x00") {
			return fmt.Errorf("--remote-python %q: give the path or name of python on the remote", g.RemotePython)
		}
	}
	if cmd.IsSet(flagRemotePre) {
		g.RemotePre = cmd.String(flagRemotePre)
		if strings.TrimSpace(g.RemotePre) == "" || strings.ContainsRune(g.RemotePre, 0) {
			return errors.New("empty --remote-pre; give shell commands, or use --unset remote_pre")
		}
	}
	if cmd.IsSet(flagSSHConfig) {
		p, err := sshConfigPath(cmd.String(flagSSHConfig))
		if err != nil {
			return err
		}
		g.SSHConfig = p
	}
	if cmd.IsSet(flagLaunchTO) {
		g.LaunchTimeout = cmd.Int(flagLaunchTO)
		if err := checkTimeout(flagLaunchTO, g.LaunchTimeout); err != nil {
			return err
		}
	}
	if cmd.IsSet(flagShutdownTO) {
		g.ShutdownTimeout = cmd.Int(flagShutdownTO)
		if err := checkTimeout(flagShutdownTO, g.ShutdownTimeout); err != nil {
			return err
		}
	}
	if cmd.IsSet(flagTransport) {
		g.Transport = cmd.String(flagTransport)
		if err := checkTransport(g.Transport); err != nil {
			return err
		}
	}
	if cmd.IsSet(flagLauncher) {
		g.Launcher = cmd.String(flagLauncher)
		if g.Launcher != "local" && g.Launcher != "slurm" {
			return fmt.Errorf("--launcher %q: use local or slurm", g.Launcher)
		}
	}
	if cmd.IsSet(flagLauncherArgs) {
		g.LauncherArgs = cmd.String(flagLauncherArgs)
		if strings.TrimSpace(g.LauncherArgs) == "" || strings.ContainsAny(g.LauncherArgs, "\n\x00") {
			return errors.New("empty --launcher-args; give the launcher's options on one line, or use --unset launcher_args")
		}
	}
	if cmd.IsSet(flagQueueTO) {
		g.QueueTimeout = cmd.Int(flagQueueTO)
		if err := checkTimeout(flagQueueTO, g.QueueTimeout); err != nil {
			return err
		}
	}
	if cmd.IsSet(flagStreams) {
		g.Streams = cmd.String(flagStreams)
		if g.Streams != kernelspec.StreamsAuto && g.Streams != kernelspec.StreamsForward && g.Streams != kernelspec.StreamsSession {
			return fmt.Errorf("--streams %q: use forward, session or auto", g.Streams)
		}
	}
	if cmd.IsSet(flagSSHClient) {
		g.SSHClient = cmd.String(flagSSHClient)
		switch g.SSHClient {
		case kernelspec.SSHClientNative, kernelspec.SSHClientOpenSSH, kernelspec.SSHClientAuto:
		default:
			return fmt.Errorf("--ssh-client %q: use native, openssh or auto", g.SSHClient)
		}
	}
	for _, f := range []struct {
		flag string
		to   *int
	}{{flagGrace, &g.Grace}, {flagReconnectTO, &g.ReconnectTimeout}, {flagLinkTO, &g.LinkTimeout}, {flagMasterPer, &g.MasterPersist}} {
		if cmd.IsSet(f.flag) {
			*f.to = cmd.Int(f.flag)
			if err := checkTimeout(f.flag, *f.to); err != nil {
				return err
			}
		}
	}
	if cmd.IsSet(flagNotices) {
		g.ConnectionNotices = cmd.String(flagNotices)
		if g.ConnectionNotices != "on" && g.ConnectionNotices != "off" {
			return fmt.Errorf("--%s %q: use on or off", flagNotices, g.ConnectionNotices)
		}
	}
	if cmd.IsSet(flagIOPubBacklog) {
		g.IOPubBacklog = cmd.Int(flagIOPubBacklog)
		if g.IOPubBacklog <= 0 {
			return fmt.Errorf("--%s %d: give a positive number of MiB", flagIOPubBacklog, g.IOPubBacklog)
		}
	}
	if cmd.IsSet(flagMaster) {
		g.Master = cmd.String(flagMaster)
		if g.Master != "on" && g.Master != "off" {
			return fmt.Errorf("--%s %q: use on or off", flagMaster, g.Master)
		}
	}
	if g.Launcher == "slurm" && g.Transport == "ipc" {
		return errors.New("--launcher slurm runs the kernel on a compute node, which the login node reaches over tcp only; drop --transport ipc (or --unset transport)")
	}
	return nil
}

// unsettable maps the optional fields --unset accepts to how they are cleared.
var unsettable = map[string]struct {
	flag  string
	clear func(*kernelspec.Gopyk)
}{
	"ssh_config":         {flagSSHConfig, func(g *kernelspec.Gopyk) { g.SSHConfig = "" }},
	"remote_python":      {flagRemotePython, func(g *kernelspec.Gopyk) { g.RemotePython = "" }},
	"remote_pre":         {flagRemotePre, func(g *kernelspec.Gopyk) { g.RemotePre = "" }},
	"launch_timeout":     {flagLaunchTO, func(g *kernelspec.Gopyk) { g.LaunchTimeout = 0 }},
	"shutdown_timeout":   {flagShutdownTO, func(g *kernelspec.Gopyk) { g.ShutdownTimeout = 0 }},
	"transport":          {flagTransport, func(g *kernelspec.Gopyk) { g.Transport = "" }},
	"launcher":           {flagLauncher, func(g *kernelspec.Gopyk) { g.Launcher = "" }},
	"launcher_args":      {flagLauncherArgs, func(g *kernelspec.Gopyk) { g.LauncherArgs = "" }},
	"queue_timeout":      {flagQueueTO, func(g *kernelspec.Gopyk) { g.QueueTimeout = 0 }},
	"grace":              {flagGrace, func(g *kernelspec.Gopyk) { g.Grace = 0 }},
	"reconnect_timeout":  {flagReconnectTO, func(g *kernelspec.Gopyk) { g.ReconnectTimeout = 0 }},
	"streams":            {flagStreams, func(g *kernelspec.Gopyk) { g.Streams = "" }},
	"link_timeout":       {flagLinkTO, func(g *kernelspec.Gopyk) { g.LinkTimeout = 0 }},
	"connection_notices": {flagNotices, func(g *kernelspec.Gopyk) { g.ConnectionNotices = "" }},
	"ssh_client":         {flagSSHClient, func(g *kernelspec.Gopyk) { g.SSHClient = "" }},
	"iopub_backlog":      {flagIOPubBacklog, func(g *kernelspec.Gopyk) { g.IOPubBacklog = 0 }},
	"master":             {flagMaster, func(g *kernelspec.Gopyk) { g.Master = "" }},
	"master_persist":     {flagMasterPer, func(g *kernelspec.Gopyk) { g.MasterPersist = 0 }},
}

const unsettableList = "ssh_config, remote_python, remote_pre, launch_timeout, shutdown_timeout, transport, launcher, launcher_args, queue_timeout, grace, reconnect_timeout, streams, link_timeout, connection_notices, ssh_client, iopub_backlog, master, master_persist"
