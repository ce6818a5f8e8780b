package manage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/urfave/cli/v3"
)

func (a *App) deleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete kernel specs written by gopyk",
		UsageText: "gopyk delete [--force] [-y] NAME...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "also delete specs gopyk did not write, or cannot read"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation (asked only on a terminal)"},
		},
		Action: a.runDelete,
	}
}

func (a *App) runDelete(_ context.Context, cmd *cli.Command) error {
	names := cmd.Args().Slice()
	if len(names) == 0 {
		return usagef("no kernel spec named; give the names to delete (see 'gopyk list')")
	}
	force := cmd.Bool("force")

	// Check every name before deleting anything, so a typo deletes nothing.
	var specs []*kernelspec.Spec
	seen := map[string]bool{}
	for _, n := range names {
		key := strings.ToLower(n)
		if seen[key] {
			continue
		}
		seen[key] = true
		dir, ok := kernelspec.Lookup(key)
		if !ok {
			return fmt.Errorf("%w; run 'gopyk list' to see the kernel specs", &kernelspec.NotFoundError{Name: key, Dirs: kernelspec.Path()})
		}
		s, err := kernelspec.Load(key, dir)
		switch {
		case err != nil && !force:
			return fmt.Errorf("%w; use --force to delete it anyway", err)
		case err != nil:
			s = &kernelspec.Spec{Name: key, Dir: dir}
		case s.Gopyk == nil && !force:
			return fmt.Errorf("kernel spec %q in %s was not written by gopyk (no metadata.gopyk); use --force to delete it anyway", key, dir)
		}
		specs = append(specs, s)
	}

	if !cmd.Bool("yes") && isTerminal(a.Stdin) {
		ok, err := a.confirm(specs)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("nothing deleted; answer y to delete, or pass -y")
		}
	}
	for _, s := range specs {
		if err := s.Remove(); err != nil {
			return err
		}
		fmt.Fprintf(a.Stdout, "Removed kernel spec '%s' from %s\n", s.Name, s.Dir)
	}
	return nil
}

func (a *App) confirm(specs []*kernelspec.Spec) (bool, error) {
	for _, s := range specs {
		fmt.Fprintf(a.Stderr, "  %s  %s\n", s.Name, s.Dir)
	}
	what := "this kernel spec"
	if len(specs) > 1 {
		what = fmt.Sprintf("these %d kernel specs", len(specs))
	}
	fmt.Fprintf(a.Stderr, "Delete %s? [y/N] ", what)
	line, err := bufio.NewReader(a.Stdin).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(a.Stderr)
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
