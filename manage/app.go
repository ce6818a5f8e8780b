package manage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v3"
	"golang.org/x/term"
)

// Version is the gopyk version; the Makefile sets it with -ldflags -X.
var Version = ""

// App is the gopyk command with its inputs and outputs injected, so tests can
// run it in-process.
type App struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Executable returns the path of the running gopyk; gopyk-kernel is
	// looked for beside it. Default: os.Executable.
	Executable func() (string, error)
	// RemoteChecks runs the checks of `gopyk list` that need the remote host.
	// Default: connect to each host and ask its remote launcher.
	RemoteChecks RemoteChecks

	log *slog.Logger
}

// Main runs gopyk with args (args[0] is the program name) and returns the exit
// status: 0 success, 1 failure, 2 usage error.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &App{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	return a.Run(ctx, args)
}

// usageError marks a mistake on the command line (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// Run is Main for a configured App.
func (a *App) Run(ctx context.Context, args []string) int {
	if a.Executable == nil {
		a.Executable = os.Executable
	}
	if a.Stdin == nil {
		a.Stdin = strings.NewReader("")
	}
	a.log = slog.New(slog.DiscardHandler)

	root := a.rootCommand()
	err := root.Run(ctx, args)
	if err == nil {
		return 0
	}
	// One line, whatever the error carries (ssh's stderr, a wrapped chain).
	fmt.Fprintf(a.Stderr, "gopyk: error: %s\n", oneLine(err.Error()))
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}

func (a *App) rootCommand() *cli.Command {
	onUsage := func(_ context.Context, cmd *cli.Command, err error, _ bool) error {
		return usagef("%v; see '%s --help'", lowerFirst(err.Error()), cmd.FullName())
	}
	cmds := []*cli.Command{a.listCommand(), a.addCommand(), a.editCommand(), a.deleteCommand(), a.connectCommand(), a.wsProxyCommand()}
	for _, c := range cmds {
		c.OnUsageError = onUsage
	}
	return &cli.Command{
		Name:            "gopyk",
		Usage:           "manage Jupyter kernels that run on remote machines over SSH",
		Reader:          a.Stdin,
		Writer:          a.Stdout,
		ErrWriter:       a.Stderr,
		HideVersion:     true, // -v is verbosity here; --version is our own flag
		HideHelpCommand: true,
		// Errors are printed once, by Run; never os.Exit from inside the library.
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
		OnUsageError:   onUsage,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log to stderr; repeat for more (-vv, -vvv)", Config: cli.BoolConfig{Count: new(int)}},
			&cli.BoolFlag{Name: "version", Usage: "print the version and exit", Local: true},
		},
		UseShortOptionHandling: true,
		Before: func(ctx context.Context, cmd *cli.Command) (context.Context, error) {
			a.setVerbosity(cmd.Count("verbose"))
			return ctx, nil
		},
		Commands: cmds,
		Action: func(_ context.Context, cmd *cli.Command) error {
			if cmd.Bool("version") {
				fmt.Fprintf(a.Stdout, "gopyk %s\n", version())
				return nil
			}
			if cmd.Args().Present() {
				return usagef("unknown command %q; use list, add, edit or delete (see 'gopyk --help')", cmd.Args().First())
			}
			return usagef("no command given; use list, add, edit or delete (see 'gopyk --help')")
		},
	}
}

// setVerbosity maps -v counts as sshpyk does: errors only by default, then
// warnings, info and debug.
func (a *App) setVerbosity(n int) {
	if n <= 0 {
		return
	}
	level := slog.LevelWarn
	switch {
	case n == 2:
		level = slog.LevelInfo
	case n >= 3:
		level = slog.LevelDebug
	}
	a.log = slog.New(slog.NewTextHandler(a.Stderr, &slog.HandlerOptions{Level: level}))
}

// warn prints a message the user must see whatever the verbosity, on stderr.
func (a *App) warn(format string, args ...any) {
	fmt.Fprintf(a.Stderr, "gopyk: warning: "+format+"\n", args...)
}

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "devel-" + s.Value[:12]
			}
		}
	}
	return "devel"
}

// isTerminal reports whether r or w is an interactive terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
