package manage

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/urfave/cli/v3"
)

func (a *App) editCommand() *cli.Command {
	flags := append([]cli.Flag{
		&cli.StringFlag{Name: flagKernelName, Usage: "`NAME` of the kernel spec to change", Required: true},
		&cli.StringSliceFlag{Name: "unset", Usage: "remove an optional `FIELD` (" + unsettableList + "); repeatable"},
	}, fieldFlags(false)...)
	return &cli.Command{
		Name:      "edit",
		Usage:     "change fields of a kernel spec written by gopyk; everything else is kept",
		UsageText: "gopyk edit --kernel-name NAME [--unset FIELD]... [flags]",
		Flags:     flags,
		Action:    a.runEdit,
	}
}

func (a *App) runEdit(_ context.Context, cmd *cli.Command) error {
	if cmd.Args().Present() {
		return usagef("unexpected argument %q; edit takes only flags (see 'gopyk edit --help')", cmd.Args().First())
	}
	name := cmd.String(flagKernelName)
	var unset []string
	for _, f := range cmd.StringSlice("unset") {
		key := strings.ReplaceAll(strings.ToLower(f), "-", "_")
		u, ok := unsettable[key]
		if !ok {
			return usagef("--unset %s: not an optional field; use one of %s", f, unsettableList)
		}
		if cmd.IsSet(u.flag) {
			return usagef("--unset %s and --%s both given; give one", f, u.flag)
		}
		unset = append(unset, key)
	}
	changes := len(unset)
	for _, f := range fieldFlags(false) {
		if cmd.IsSet(f.Names()[0]) {
			changes++
		}
	}
	if changes == 0 {
		return usagef("nothing to change; give the fields to change as flags, or --unset FIELD (see 'gopyk edit --help')")
	}
	if err := checkKernelName(flagKernelName, name); err != nil {
		return err
	}

	s, err := kernelspec.Find(name)
	if errors.Is(err, kernelspec.ErrNotFound) {
		return fmt.Errorf("%w; run 'gopyk list' to see the kernel specs", err)
	}
	if err != nil {
		return fmt.Errorf("%w; fix the file by hand, or replace it with 'gopyk add --replace'", err)
	}
	if s.Gopyk == nil {
		return fmt.Errorf("kernel spec %q in %s was not written by gopyk (no metadata.gopyk); edit its kernel.json by hand, or use 'gopyk add --kernel-name %s --replace'", s.Name, s.Dir, s.Name)
	}
	if err := applyFields(cmd, s); err != nil {
		return err
	}
	sort.Strings(unset)
	for _, key := range unset {
		unsettable[key].clear(s.Gopyk)
	}
	a.log.Debug("rewriting kernel spec", "name", s.Name, "dir", s.Dir, "unset", unset)
	if err := s.Write(s.Dir); err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "Kernel spec '%s' updated in %s\n", s.Name, s.Dir)
	return nil
}
