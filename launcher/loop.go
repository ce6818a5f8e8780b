package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/gopyk/gopyk/provisioner"
)

// releaseWait bounds the wait for a dead kernel's connection to close.
const releaseWait = 5 * time.Second

// loop runs requests until one ends the launcher or the kernel dies.
func (l *launcher) loop() error {
	for {
		select {
		case <-l.k.Done():
			return l.died()
		case r := <-l.disp.reqs:
			if r.act.final() {
				return l.finish(r)
			}
			l.perform(r)
		}
	}
}

// perform runs a request that keeps the launcher going.
func (l *launcher) perform(r request) {
	switch r.act {
	case actInterrupt:
		ctx, cancel := context.WithTimeout(l.disp.workCtx, interruptDeadline)
		defer cancel()
		if err := l.k.Interrupt(ctx); err != nil {
			l.log.Warn("interrupt failed", "by", r.why, "err", err)
			return
		}
		l.log.Info("kernel interrupted", "by", r.why)
	case actRestart:
		l.log.Info("restarting the kernel", "by", r.why)
		ctx, cancel := context.WithTimeout(l.disp.workCtx, l.launchDeadline()+l.shutdownDeadline())
		defer cancel()
		t0 := time.Now()
		if err := l.k.Restart(ctx); err != nil {
			l.log.Error("restart failed", "err", err)
			return
		}
		if err := l.savePersisted(); err != nil {
			l.log.Error("restarted, but the persistence file could not be updated", "err", err)
		}
		l.log.Info("kernel restarted", "took", time.Since(t0).Round(time.Millisecond))
	}
}

// finish carries out a request that ends the launcher.
func (l *launcher) finish(r request) error {
	switch {
	case r.act == actLeave:
		return l.leave(r.why)
	case r.act == actShutdown && l.persistent:
		l.log.Info("the kernel is persistent: leaving it running", "by", r.why)
		return l.leave(r.why)
	}
	l.log.Info("shutting down the kernel", "by", r.why)
	ctx, cancel := context.WithTimeout(context.Background(), l.shutdownDeadline())
	defer cancel()
	err := l.k.Shutdown(ctx)
	l.conn.remove()
	if err != nil {
		return fmt.Errorf("shut down the remote kernel: %w", err)
	}
	l.removePersisted()
	l.log.Info("kernel shut down")
	return nil
}

// leave exits with the kernel still running, after recording how to come
// back to it. It never interrupts the running cell (sshpyk's B5).
func (l *launcher) leave(why string) error {
	if !l.persistent {
		// Without a persistence file nobody could re-attach to what we leave.
		l.persistent = true
		if l.persistPath == "" {
			id := idFromConnFile(l.conn.path)
			if id == "" {
				id = newID()
			}
			l.persistPath = persistPath(l.runtimeDir, id)
		}
	}
	if err := l.savePersisted(); err != nil {
		return err
	}
	if err := l.k.Leave(); err != nil {
		return fmt.Errorf("leave the remote kernel: %w", err)
	}
	l.conn.remove() // its ports stop answering now
	l.log.Info("left the kernel running", "by", why)
	l.log.Info(fmt.Sprintf("To re-attach: gopyk-kernel --kernel %s --existing %s", l.spec.Name, l.shortPath(l.persistPath)))
	return nil
}

// died handles a kernel that went away on its own: exit non-zero at once so
// Jupyter's auto-restart can start a new one (Jupyter's restarter watches the
// process, not its status, so a clean exit may say 0).
func (l *launcher) died() error {
	err := l.k.Err()
	if err == nil {
		err = provisioner.ErrKernelDied
	}
	l.conn.remove()
	// The connection closes on its own now; let it finish (a forward in
	// the user's OpenSSH master is taken out), but never hold up an exit.
	select {
	case <-l.k.Released():
	case <-time.After(releaseWait):
	}
	var ee *provisioner.ExitError
	if errors.As(err, &ee) && ee.ExitCode != nil && *ee.ExitCode == 0 {
		// ipykernel exits 0 only when asked to (a client's shutdown_request,
		// exit() in a cell): a shutdown, not a death, so no error line. The
		// provisioner said who asked.
		l.removePersisted()
		return nil
	}
	if errors.Is(err, provisioner.ErrKernelDied) || !l.persistent {
		l.removePersisted()
	} else {
		l.log.Info(fmt.Sprintf("the kernel may still be running; to re-attach: gopyk-kernel --kernel %s --existing %s", l.spec.Name, l.shortPath(l.persistPath)))
	}
	return err
}

func (l *launcher) logSignalTable() {
	level := slog.LevelDebug
	if l.tty {
		level = slog.LevelInfo
	}
	ctx := context.Background()
	for _, e := range signalTable {
		l.log.Log(ctx, level, signalHint(signalName(e.sig), e.help), "pid", os.Getpid())
	}
	if l.tty {
		l.log.Log(ctx, level, menuHint)
	}
}

// startMenu reads the terminal for Ctrl+D; the returned func stops it.
func (l *launcher) startMenu(stdin *os.File) func() {
	tr, err := newTTYReader(stdin)
	if err != nil {
		l.log.Warn("no Ctrl+D menu", "err", err)
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runMenu(tr, l.stderr, l.disp.fromMenu)
	}()
	return func() {
		tr.Close()
		<-done
		tr.release()
	}
}
