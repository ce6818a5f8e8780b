//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/provisioner"
	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo: error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	step := func(format string, a ...any) { fmt.Fprintf(out, "• "+format+"\n", a...) }
	t0 := time.Now()

	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	sshd, err := testbed.StartSSHD(sctx, testbed.Options{Alias: "gopyk-demo"})
	cancel()
	if err != nil {
		return fmt.Errorf("start the demo sshd: %w", err)
	}
	defer sshd.Stop()
	step("started OpenSSH sshd on %s (pid %d), logging in as %s", sshd.Addr, sshd.PID(), sshd.User)

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := provisioner.Config{
		SpecName: "gopyk-demo",
		Gopyk: kernelspec.Gopyk{
			SSHHostAlias: sshd.Alias, SSHConfig: sshd.ConfigFile,
			RemotePython: "/usr/bin/python3", RemoteKernelName: "python3",
		},
		Local:      wire.ConnInfo{IP: "127.0.0.1", Key: wire.NewKey()},
		Persistent: true,
		Log:        log,
	}

	t := time.Now()
	k, err := provisioner.Launch(ctx, cfg)
	if err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	st := k.State()
	step("launched a persistent remote kernel in %v (remote pid %d, run dir %s)", time.Since(t).Round(time.Millisecond), st.KernelPID, st.RunDir)

	c, err := connect(ctx, k.Local())
	if err != nil {
		k.Shutdown(ctx)
		return err
	}
	r, err := exec(ctx, c, "import getpass, socket\nsecret = 6 * 7\nprint(getpass.getuser(), socket.gethostname())")
	c.Close()
	if err != nil {
		k.Shutdown(ctx)
		return err
	}
	step("ran a cell remotely: it printed %q and set secret = 42", strings.TrimSpace(r.Stdout))

	if err := k.Leave(); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	step("left the kernel running and closed the SSH connection")

	t = time.Now()
	cfg.Local = wire.ConnInfo{IP: "127.0.0.1"}
	k, err = provisioner.Attach(ctx, cfg, st)
	if err != nil {
		return fmt.Errorf("re-attach: %w", err)
	}
	defer k.Shutdown(context.Background())
	step("re-attached over a new SSH connection in %v, on new local ports", time.Since(t).Round(time.Millisecond))

	if c, err = connect(ctx, k.Local()); err != nil {
		return err
	}
	defer c.Close()
	if r, err = exec(ctx, c, "secret"); err != nil {
		return err
	}
	if strings.TrimSpace(r.Result) != "42" {
		return fmt.Errorf("state did not survive the re-attach: secret = %q", r.Result)
	}
	step("the state survived: secret = %s", strings.TrimSpace(r.Result))

	done := make(chan error, 1)
	busy := make(chan struct{})
	var cell *wire.ExecResult
	go func() {
		var err error
		cell, err = exec(ctx, c, "print('sleeping', flush=True); import time; time.sleep(100)", wire.OnIOPub(func(m *wire.Message) {
			if m.Header.MsgType == "stream" && strings.Contains(m.Str("text"), "sleeping") {
				close(busy)
			}
		}))
		done <- err
	}()
	select {
	case <-busy:
	case err := <-done:
		return fmt.Errorf("the long cell ended before it was interrupted: %v", err)
	}
	t = time.Now()
	if err := k.Interrupt(ctx); err != nil {
		return fmt.Errorf("interrupt: %w", err)
	}
	if err := <-done; err != nil {
		return err
	}
	if cell.Ename != "KeyboardInterrupt" {
		return fmt.Errorf("interrupted cell ended with %q, want KeyboardInterrupt", cell.Status)
	}
	step("interrupted time.sleep(100): KeyboardInterrupt after %v", time.Since(t).Round(time.Millisecond))

	t = time.Now()
	c.Close()
	if err := k.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	step("shut the remote kernel down in %v; its supervisor removed %s", time.Since(t).Round(time.Millisecond), st.RunDir)
	step("done in %v", time.Since(t0).Round(time.Millisecond))
	return nil
}

func connect(ctx context.Context, ci wire.ConnInfo) (*wire.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, err := wire.Dial(ctx, ci)
	if err != nil {
		return nil, fmt.Errorf("connect a client: %w", err)
	}
	if err := c.WaitReady(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("kernel not ready: %w", err)
	}
	return c, nil
}

func exec(ctx context.Context, c *wire.Client, code string, opts ...wire.ExecOption) (*wire.ExecResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	r, err := c.Execute(ctx, code, opts...)
	if err != nil {
		return nil, fmt.Errorf("execute %q: %w", code, err)
	}
	return r, nil
}
