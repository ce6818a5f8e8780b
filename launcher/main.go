package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/urfave/cli/v3"
	"golang.org/x/term"

	"github.com/gopyk/gopyk/kernelspec"
)

// Version is set at build time (-ldflags "-X github.com/gopyk/gopyk/launcher.Version=v1.2.3");
// otherwise the module version from the build info is shown.
var Version = ""

// options are the command-line flags.
type options struct {
	kernel      string // --kernel: the local gopyk spec name
	connFile    string // --connection-file: what Jupyter passes
	persistent  bool
	persistFile string // --persistent-file / --persistent_file
	existing    string // --existing: persistence file name, path or glob
	leave       bool
	verbose     int // count of -v
	// kernelArgs follow our own flags (see splitKernelArgs); they are
	// appended to the remote kernel's argv.
	kernelArgs []string
}

// deps are the launcher's ties to the outside world, replaced in tests.
type deps struct {
	start      starter
	findSpec   func(name string) (*kernelspec.Spec, error)
	runtimeDir func() string
	// signals delivers the signals of signalTable until stop is called.
	signals func() (c <-chan os.Signal, stop func())
	isTTY   func(f *os.File) bool
	// parentGone is closed when the Jupyter that started us is gone (nil:
	// never); it stops watching when stop is closed.
	parentGone func(stop <-chan struct{}, log *slog.Logger) <-chan struct{}
	// interrupts receives one value per interrupt Jupyter asks for other
	// than by SIGINT (Windows: JPY_INTERRUPT_EVENT), until stop is closed.
	interrupts func(stop <-chan struct{}, log *slog.Logger) <-chan struct{}
	// steady runs once the kernel is ready (nil: nothing).
	steady func()
}

func productionDeps() deps {
	return deps{
		start:      realStarter{},
		findSpec:   kernelspec.Find,
		runtimeDir: kernelspec.RuntimeDir,
		signals:    notifySignals,
		isTTY:      func(f *os.File) bool { return term.IsTerminal(int(f.Fd())) },
		parentGone: productionWatchParent,
		interrupts: productionInterrupts,
		steady:     func() { tuneRuntime(os.Getenv) },
	}
}

// Main runs gopyk-kernel with args (without the program name) and returns
// the exit status: 0 after a shutdown or leave, 1 when the launch fails or
// the kernel dies, 2 for bad usage. stdin is read only when it is a terminal
// (the Ctrl+D menu); Jupyter gives kernels /dev/null or a pipe there.
func Main(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) int {
	return mainWith(ctx, args, stdin, stdout, stderr, productionDeps())
}

// usageError is a command-line mistake (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...) + " (see gopyk-kernel --help)"}
}

func mainWith(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer, d deps) int {
	var o options
	var version bool
	args, o.kernelArgs = splitKernelArgs(args)
	ran := false
	cmd := &cli.Command{
		Name:                   "gopyk-kernel",
		Usage:                  "run a Jupyter kernel on a remote machine over SSH (started by a gopyk kernel spec, or by hand)",
		UsageText:              "gopyk-kernel --kernel NAME [--connection-file F] [--persistent | --persistent-file F] [--leave] [-v...] [[--] KERNEL ARGS...]\ngopyk-kernel [--kernel NAME] --existing F [-v...]",
		UseShortOptionHandling: true,
		HideHelpCommand:        true,
		Writer:                 stdout,
		ErrWriter:              stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "kernel", Aliases: []string{"k"}, Usage: "the local gopyk kernel spec `NAME` (gopyk list shows them)", Destination: &o.kernel},
			&cli.StringFlag{Name: "connection-file", Aliases: []string{"c"}, Usage: "serve the kernel on the ports and key of `FILE`; written with free ports and a new key when missing (default: kernel-<id>.json in the Jupyter runtime dir)", Destination: &o.connFile},
			&cli.BoolFlag{Name: "persistent", Aliases: []string{"p"}, Usage: "keep the remote kernel running when this launcher exits on SIGTERM/SIGHUP", Destination: &o.persistent},
			&cli.StringFlag{Name: "persistent-file", Aliases: []string{"persistent_file", "f"}, Usage: "like --persistent, storing what re-attaching needs in `FILE` (0600)", Destination: &o.persistFile},
			&cli.StringFlag{Name: "existing", Aliases: []string{"e"}, Usage: "re-attach to a persistent kernel: persistence `FILE` name, path or glob (searched in . and the Jupyter runtime dir, newest wins)", Destination: &o.existing},
			&cli.BoolFlag{Name: "leave", Aliases: []string{"l"}, Usage: "launch a persistent kernel, print how to re-attach, and exit leaving it running", Destination: &o.leave},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log more: -v debug, -vv more, -vvv everything (never the key)", Config: cli.BoolConfig{Count: &o.verbose}},
			&cli.BoolFlag{Name: "version", Usage: "print the version and exit", Destination: &version},
		},
		OnUsageError: func(_ context.Context, _ *cli.Command, err error, _ bool) error {
			return usagef("%v", err)
		},
		ExitErrHandler: func(context.Context, *cli.Command, error) {}, // never os.Exit from inside the library
		Action: func(ctx context.Context, cmd *cli.Command) error {
			ran = true
			if cmd.Args().Len() > 0 {
				return usagef("unexpected argument %q", cmd.Args().First())
			}
			if version {
				fmt.Fprintln(stdout, "gopyk-kernel", versionString())
				return nil
			}
			return run(ctx, o, stdin, stderr, d)
		},
	}
	err := cmd.Run(ctx, append([]string{"gopyk-kernel"}, args...))
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "gopyk-kernel: %v\n", ue)
		return 2
	case !ran:
		fmt.Fprintf(stderr, "gopyk-kernel: %v (see gopyk-kernel --help)\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "gopyk-kernel: error: %v\n", err)
	return 1
}

func versionString() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
