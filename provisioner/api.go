package provisioner

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/provisioner/remote"
	"github.com/gopyk/gopyk/wire"
)

// Config is what a launch or an attach needs.
type Config struct {
	SpecName string           // the local spec's name, for messages and the persistence state
	Gopyk    kernelspec.Gopyk // the spec's metadata.gopyk
	// Local is the connection file Jupyter gave us (or one we made): the local
	// ports the forwards listen on and the key. The remote kernel uses the same key.
	Local       wire.ConnInfo
	Persistent  bool         // the remote kernel outlives this launcher
	Log         *slog.Logger // nil = discard
	Interactive bool         // ssh may ask on a terminal, if it finds one, for passphrases, passwords, codes
	// KernelArgs are appended to the remote kernel's argv (what Jupyter's
	// start_kernel(extra_arguments) appended to ours); sent as a JSON list,
	// never through a shell.
	KernelArgs []string
	// Unsigned: Local.Key is empty on purpose (Jupyter's connection file
	// said "key": ""), so messages go unsigned, as Jupyter does. Otherwise an
	// empty key gets a fresh one.
	Unsigned bool
	// GiveUpAfter is how long a lost connection is retried before the kernel
	// is given up (Done, with the last dial error); 0 means 12 hours, long
	// enough for a laptop's lid to stay shut overnight.
	GiveUpAfter time.Duration
}

// State is what re-attaching to a running remote kernel needs; the launcher
// stores it in the persistence file (0600).
type State struct {
	SpecName      string        `json:"spec_name"`
	Host          string        `json:"ssh_host_alias"`
	RunDir        string        `json:"run_dir"`        // the supervisor's run directory on the remote
	Control       string        `json:"control_socket"` // the supervisor's control socket on the remote
	Remote        wire.ConnInfo `json:"remote_connection"`
	KernelPID     int           `json:"kernel_pid"`
	SupervisorPID int           `json:"supervisor_pid"`
	RemoteHost    string        `json:"remote_hostname"`
	Persistent    bool          `json:"persistent"`
}

// ErrKernelDied is returned by Kernel.Wait when the remote kernel exited on its own.
var ErrKernelDied = errors.New("remote kernel died")

// ErrGone matches an attach whose kernel is no longer there: its supervisor
// is gone (shut down, or killed with the host).
var ErrGone = remote.ErrGone

// Kernel is a running remote kernel, forwarded to local ports.
//
// Methods are safe to call from several goroutines.
type Kernel struct {
	impl *kernel
}

// Launch starts a new remote kernel and forwards it to cfg.Local's ports. It
// returns once the kernel answered a kernel_info_request through the forwards
// and iopub delivered.
func Launch(ctx context.Context, cfg Config) (*Kernel, error) { return launch(ctx, cfg) }

// Attach re-attaches to a kernel left running (persistent), forwarding it to
// cfg.Local's ports (cfg.Local.Key is replaced by the remote kernel's key).
func Attach(ctx context.Context, cfg Config, st State) (*Kernel, error) { return attach(ctx, cfg, st) }

// Interrupt interrupts the running cell the way the remote spec says (signal or message).
func (k *Kernel) Interrupt(ctx context.Context) error { return k.impl.interrupt(ctx) }

// Restart shuts the remote kernel down and starts it again with the same key,
// keeping the local ports.
func (k *Kernel) Restart(ctx context.Context) error { return k.impl.restart(ctx) }

// Shutdown shuts the remote kernel down, persistent or not, and stops forwarding.
func (k *Kernel) Shutdown(ctx context.Context) error { return k.impl.shutdown(ctx) }

// Leave stops forwarding and disconnects, leaving the remote kernel running.
// It never interrupts the running cell.
func (k *Kernel) Leave() error { return k.impl.leave() }

// Close ends this launcher's hold on the kernel: a persistent kernel is left
// running, any other one is shut down.
func (k *Kernel) Close(ctx context.Context) error { return k.impl.close(ctx) }

// Done is closed when the kernel is gone: it died, or the connection could not
// be restored. Err then says why.
func (k *Kernel) Done() <-chan struct{} { return k.impl.done }

// Released is closed once the kernel let go of everything it held on this
// side (its goroutines, listeners and connection): after Shutdown, Leave,
// or, when the kernel ended on its own, shortly after Done. A process that
// exits should wait for it: a connection through the user's OpenSSH master
// removes what it set up there when it closes.
func (k *Kernel) Released() <-chan struct{} { return k.impl.released }

// Err is nil until Done is closed; then ErrKernelDied (wrapped) or the connection error.
func (k *Kernel) Err() error { return k.impl.err() }

// State returns what re-attaching needs.
func (k *Kernel) State() State { return k.impl.state() }

// Local returns the local connection info (ports and key) clients use.
func (k *Kernel) Local() wire.ConnInfo { return k.impl.local() }
