//go:build !windows

package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/gopyk/gopyk/sshconf"
	"golang.org/x/sys/unix"
)

// envMaster makes gopyk or gopyk-kernel run as a master (Ensure sets it):
// the Config comes on stdin, one line of outcome goes to fd 3.
const envMaster = "GOPYK_MASTER"

// IsMaster reports whether this process was started to be a master.
func IsMaster() bool { return os.Getenv(envMaster) == "1" }

// Config is what a master needs: the route it was started for and how to
// behave. It is sent as JSON on the master's stdin.
type Config struct {
	Alias   string        `json:"alias"`
	Route   sshconf.Route `json:"route"`
	Socket  string        `json:"socket"`
	Persist time.Duration `json:"persist"` // < 0: until stopped
	// DeadAfter bounds the connection's silence (sshconf.DialOptions).
	DeadAfter time.Duration `json:"dead_after"`
	// Interactive lets the first dial ask on the terminal (stderr), for
	// passwords, codes and passphrases; later dials never ask, unless
	// Foreground.
	Interactive bool `json:"interactive"`
	// Foreground keeps the master attached to its terminal (gopyk connect
	// --foreground): its log goes there, and every dial may ask.
	Foreground bool `json:"foreground"`
	LogLevel   slog.Level
}

// outcome is the line a new master writes on fd 3 once its first dial ended.
type outcome struct {
	OK    bool   `json:"ok"`
	PID   int    `json:"pid"`
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
	// Exists: another master bound the socket first (a race lost); the
	// starter uses that one.
	Exists bool `json:"exists,omitempty"`
}

// Main is a master process's whole life; it returns the exit status.
func Main() int {
	os.Unsetenv(envMaster) // not for what it runs (ProxyCommand)
	ready := os.NewFile(3, "ready")
	var cfg Config
	if err := json.NewDecoder(os.Stdin).Decode(&cfg); err != nil {
		tell(ready, outcome{Error: "master: read its configuration: " + err.Error()})
		return 2
	}
	return Serve(cfg, func(o outcome) { tell(ready, o) })
}

func tell(w io.WriteCloser, o outcome) {
	if w == nil {
		return
	}
	b, _ := json.Marshal(o)
	_, _ = w.Write(append(b, '\n'))
	w.Close()
}

// Serve binds cfg.Socket, dials, reports the first dial's outcome with
// report, and serves until the master is told to stop or nobody used it
// for cfg.Persist. It returns the exit status.
func Serve(cfg Config, report func(outcome)) int {
	logOut, logClose := logSink(cfg)
	defer logClose()
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: cfg.LogLevel})).With("master", cfg.Alias)
	ln, err := bindSocket(cfg.Socket)
	if err != nil {
		o := outcome{Error: err.Error()}
		if errors.Is(err, os.ErrExist) {
			o = outcome{Exists: true, Error: "another master listens at " + cfg.Socket}
		}
		report(o)
		return 1
	}
	first := true
	var s *server
	l := newLink(func(ctx context.Context) (*sshconf.Client, error) {
		ask := cfg.Foreground || first && cfg.Interactive
		first = false
		return sshconf.Dial(ctx, cfg.Route, sshconf.DialOptions{Interactive: ask, Log: log, DeadAfter: cfg.DeadAfter})
	}, log, func(gen uint64) { s.lost(gen) })
	info := Info{PID: os.Getpid(), Alias: cfg.Alias, Target: target(cfg.Route), Socket: cfg.Socket, Started: time.Now(), Persist: cfg.Persist.Seconds()}
	if cfg.Persist < 0 {
		info.Persist = -1
	}
	s = newServer(ln, cfg.Socket, l, cfg.Persist, info, log)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if !cfg.Foreground {
		signal.Ignore(syscall.SIGHUP) // a terminal it asked on may go away
	}
	go func() {
		select {
		case sig := <-sigs:
			log.Info("stopping", "signal", sig.String())
			s.exit()
		case <-s.stop:
		}
	}()

	served := make(chan struct{})
	go func() {
		defer close(served)
		s.serve()
	}()
	// The first dial, on the starter's terminal when it may ask. Clients
	// that arrive meanwhile join it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	_, _, err = l.client(ctx)
	cancel()
	if err != nil {
		report(outcome{Error: err.Error(), Kind: kindName(err)})
		s.exit()
		<-served
		return 1
	}
	report(outcome{OK: true, PID: os.Getpid()})
	oneP()
	if !cfg.Foreground {
		detach()
	}
	log.Info("serving", "socket", cfg.Socket, "persist", cfg.Persist)
	<-served
	log.Info("exited")
	return 0
}

// oneP gives the master one P once it has logged in, unless the user set
// GOMAXPROCS: from then on it moves small messages between its clients'
// sockets and the connection, and with more Ps every goroutine handoff on
// the way wakes another thread (gopyk-kernel does the same once its kernel
// is ready, see package launcher). A `pass` round trip through the master
// cost it 0.84 ms of CPU with both Ps of a 2-core VM, 0.67 ms with one
// (the round trip itself ~0.1 ms less, within the noise).
func oneP() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}

// bindSocket listens at path, atomically as OpenSSH does: on a temporary
// name first, then linked into place, so nobody ever connects to a socket
// that does not listen yet; a path that exists means another master won.
func bindSocket(path string) (*net.UnixListener, error) {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	os.Remove(tmp)
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen at %s: %w", tmp, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Link(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%s: %w", path, os.ErrExist)
		}
		return nil, fmt.Errorf("put the socket at %s: %w", path, err)
	}
	os.Remove(tmp)
	return ln, nil
}

// logSink is where a master logs: its terminal in the foreground, else a
// file beside its socket (0600), started afresh by each master.
func logSink(cfg Config) (io.Writer, func()) {
	if cfg.Foreground {
		return os.Stderr, func() {}
	}
	f, err := os.OpenFile(cfg.Socket+".log", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return io.Discard, func() {}
	}
	return f, func() { f.Close() }
}

// detach leaves the terminal and the starter's directory once the login
// is done: stdin, stdout and stderr go to /dev/null.
func detach() {
	if null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		for _, fd := range []int{0, 1, 2} {
			_ = unix.Dup2(int(null.Fd()), fd)
		}
		null.Close()
	}
	_ = os.Chdir("/")
}

// target is user@host:port of the route, with its jump hosts.
func target(route sshconf.Route) string {
	var parts []string
	for _, s := range route {
		parts = append(parts, fmt.Sprintf("%s@%s:%d", s.User, s.HostName, s.Port))
	}
	return strings.Join(parts, " → ")
}
