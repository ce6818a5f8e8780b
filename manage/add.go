package manage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/urfave/cli/v3"
)

func (a *App) addCommand() *cli.Command {
	flags := append([]cli.Flag{
		&cli.StringFlag{Name: flagKernelName, Usage: "`NAME` of the new kernel spec (default: ssh_<alias>_<remote kernel>)"},
	}, fieldFlags(true)...)
	flags = append(flags,
		&cli.BoolFlag{Name: "replace", Usage: "overwrite a kernel spec of the same name"},
		&cli.BoolFlag{Name: "user", Usage: "install for the current user, in $JUPYTER_DATA_DIR/kernels (default)"},
		&cli.StringFlag{Name: "prefix", Usage: "install into `DIR`/share/jupyter/kernels"},
		&cli.BoolFlag{Name: "sys-prefix", Usage: "install into the environment's prefix ($" + kernelspec.SysPrefixEnv + ", default /usr)"},
	)
	return &cli.Command{
		Name:      "add",
		Usage:     "add a kernel spec that runs a remote kernel over SSH",
		UsageText: "gopyk add --ssh-host-alias HOST [--remote-kernel-name NAME] [flags]",
		Flags:     flags,
		Action:    a.runAdd,
	}
}

func (a *App) runAdd(_ context.Context, cmd *cli.Command) error {
	if cmd.Args().Present() {
		return usagef("unexpected argument %q; add takes only flags (see 'gopyk add --help')", cmd.Args().First())
	}
	if !cmd.IsSet(flagAlias) {
		return usagef("missing --ssh-host-alias; give the Host alias from your ssh config that reaches the remote machine")
	}
	dest, err := destination(cmd)
	if err != nil {
		return err
	}

	s := &kernelspec.Spec{
		Language:      "python",
		InterruptMode: "signal", // Jupyter signals gopyk-kernel, which interrupts the remote kernel its own way
		Gopyk:         &kernelspec.Gopyk{RemoteKernelName: "python3"},
	}
	if err := applyFields(cmd, s); err != nil {
		return err
	}
	g := s.Gopyk
	name := cmd.String(flagKernelName)
	if cmd.IsSet(flagKernelName) {
		if err := checkKernelName(flagKernelName, name); err != nil {
			return err
		}
	} else {
		name = defaultName(g.SSHHostAlias, g.RemoteKernelName)
	}
	if s.DisplayName == "" {
		s.DisplayName = fmt.Sprintf("%s (%s)", g.RemoteKernelName, g.SSHHostAlias)
	}

	dir := existingEntry(dest, name)
	if !cmd.Bool("replace") {
		if found, ok := kernelspec.Lookup(name); ok {
			return fmt.Errorf("kernel spec %q already exists in %s; use --replace to overwrite it or choose another --kernel-name", strings.ToLower(name), found)
		}
		if isFile(filepath.Join(dir, kernelspec.FileName)) {
			return fmt.Errorf("kernel spec %q already exists in %s; use --replace to overwrite it or choose another --kernel-name", strings.ToLower(name), dir)
		}
	}

	bin, warning := a.findKernelBinary()
	if warning != "" {
		a.warn("%s", warning)
	}
	s.Argv = []string{bin, "--kernel", name, "--connection-file", "{connection_file}"}
	a.log.Debug("writing kernel spec", "name", name, "dir", dir, "argv", s.Argv)
	if err := s.Write(dir); err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "Kernel spec '%s' installed in %s\n", strings.ToLower(name), dir)
	a.warnIfHidden(name, dir)
	return nil
}

// destination is the kernels dir chosen by --user (default), --prefix or --sys-prefix.
func destination(cmd *cli.Command) (string, error) {
	n := 0
	for _, f := range []string{"user", "prefix", "sys-prefix"} {
		if cmd.IsSet(f) {
			n++
		}
	}
	if n > 1 {
		return "", usagef("--user, --prefix and --sys-prefix exclude each other; give one")
	}
	switch {
	case cmd.IsSet("prefix"):
		if cmd.String("prefix") == "" {
			return "", usagef("empty --prefix; give the prefix directory, e.g. --prefix ~/.venv")
		}
		return kernelspec.PrefixKernelDir(cmd.String("prefix"))
	case cmd.Bool("sys-prefix"):
		if kernelspec.SysPrefix() == "" {
			return "", usagef("--sys-prefix needs %s set to your Python's sys.prefix on Windows (python -c \"import sys; print(sys.prefix)\"), or use --prefix", kernelspec.SysPrefixEnv)
		}
		return kernelspec.PrefixKernelDir(kernelspec.SysPrefix())
	}
	return kernelspec.UserKernelDir(), nil
}

var unsafeNameChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// defaultName is ssh_<alias>_<remote kernel>, lower-cased as Jupyter will show it.
func defaultName(alias, remoteKernel string) string {
	return strings.ToLower(unsafeNameChars.ReplaceAllString("ssh_"+alias+"_"+remoteKernel, "_"))
}

// existingEntry is dest/name, or the entry of dest that Jupyter would take
// for name (names match lower-cased), so --replace rewrites that one.
func existingEntry(dest, name string) string {
	entries, _ := os.ReadDir(dest)
	for _, e := range entries {
		if strings.EqualFold(e.Name(), name) && isFile(filepath.Join(dest, e.Name(), kernelspec.FileName)) {
			return filepath.Join(dest, e.Name())
		}
	}
	return filepath.Join(dest, name)
}

// warnIfHidden tells the user when Jupyter will not see the spec just written.
func (a *App) warnIfHidden(name, dir string) {
	found, ok := kernelspec.Lookup(name)
	switch {
	case !ok:
		share := filepath.Dir(filepath.Dir(dir))
		a.warn("Jupyter does not search %s; add it to JUPYTER_PATH (export JUPYTER_PATH=%s)", share, share)
	case found != dir:
		a.warn("Jupyter will use the kernel spec %q in %s, which comes first on its path, not this one; delete that one or choose another --kernel-name", strings.ToLower(name), found)
	}
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
