//go:build !windows

package master

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"github.com/gopyk/gopyk/openssh"
	"github.com/gopyk/gopyk/sshconf"
)

// Ensure returns the socket of a live master for route: the one that
// answers there, or a new one started now (which logs in first: its
// failure is Ensure's, of the same sshconf kind). Launches racing to start
// one end with one: a lock beside the socket lets one start it, the others
// then find it.
func Ensure(ctx context.Context, route sshconf.Route, o Options) (string, error) {
	path, err := SocketPath(route)
	if err != nil {
		return "", err
	}
	if alive(ctx, path) {
		return path, nil
	}
	lock := flock.New(path + ".lock")
	ok, err := lock.TryLockContext(ctx, 20*time.Millisecond)
	if err != nil || !ok {
		return "", fmt.Errorf("wait for the master at %s to start: %w", path, errors.Join(err, ctx.Err()))
	}
	defer lock.Unlock()
	if alive(ctx, path) {
		return path, nil // another launch started it while we waited
	}
	// A socket nobody answers on is a master that died (kill -9, a
	// reboot): take its place.
	if err := os.Remove(path); err == nil && o.Log != nil {
		o.Log.Info("removed the socket of a master that is gone", "socket", path)
	}
	return path, start(ctx, route, path, o)
}

// ErrNotGopyk: a master is started by running gopyk or gopyk-kernel
// again; another program (a test binary using the packages) must name one
// (Options.Exe), or dial on its own.
var ErrNotGopyk = errors.New("this program is not gopyk or gopyk-kernel, which a master runs as")

// masterExe is the program a master runs as: Options.Exe, or this program
// when it is gopyk or gopyk-kernel (whose mains run Main for IsMaster). Any
// other program would run its own main again, which for a test binary
// means its tests, each starting masters of its own.
func masterExe(o Options) (string, error) {
	if os.Getenv(envMaster) == "1" {
		return "", errors.New("a master's own program tried to start another master: it does not run master.Main")
	}
	exe := o.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return "", err
		}
	}
	base := strings.TrimSuffix(filepath.Base(exe), ".exe")
	switch {
	case strings.HasSuffix(base, ".test"):
		// Even when named: a go test binary started again runs its
		// tests again, and theirs start masters (a fork bomb).
		return "", fmt.Errorf("%s is a test binary: %w", exe, ErrNotGopyk)
	case o.Exe != "", base == "gopyk", base == "gopyk-kernel":
		return exe, nil
	}
	return "", fmt.Errorf("%s: %w", exe, ErrNotGopyk)
}

// start runs a new master for route at path and waits for its first dial.
func start(ctx context.Context, route sshconf.Route, path string, o Options) error {
	exe, err := masterExe(o)
	if err != nil {
		return fmt.Errorf("start a master: %w", err)
	}
	cfg := Config{Alias: o.Alias, Route: route, Socket: path, Persist: o.Persist, DeadAfter: o.DeadAfter, Interactive: o.Interactive, LogLevel: o.LogLevel}
	body, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	inR, inW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return err
	}
	cmd := exec.Command(exe)
	// Its arguments are for ps: what the process is, and for which host
	// (GOPYK_MASTER makes it a master; they are not read).
	cmd.Args = append(cmd.Args, "master", o.Alias)
	cmd.Env = append(os.Environ(), envMaster+"=1")
	cmd.Stdin = inR
	cmd.Stderr = os.Stderr // the terminal its first dial may ask on
	cmd.ExtraFiles = []*os.File{readyW}
	// Its own session: Jupyter's kill of the kernel's process group, or
	// the terminal's hangup, does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	inR.Close()
	readyW.Close()
	if err != nil {
		inW.Close()
		return fmt.Errorf("start a master: %w", err)
	}
	_, _ = inW.Write(body)
	inW.Close()
	// It outlives us, or exits before: either way it is reaped.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	lines := make(chan outcome, 1)
	go func() {
		var out outcome
		if line, err := bufio.NewReader(readyR).ReadBytes('\n'); err == nil {
			_ = json.Unmarshal(line, &out)
		}
		lines <- out
	}()
	select {
	case out := <-lines:
		switch {
		case out.OK:
			if o.Log != nil {
				o.Log.Info("started a master", "socket", path, "pid", out.PID)
			}
			return nil
		case out.Exists:
			return nil // lost a race with a master started without the lock
		case out.Kind != "":
			return ParseFailure("[" + out.Kind + "] " + out.Error)
		case out.Error != "":
			return errors.New(out.Error)
		}
		err := <-exited
		return fmt.Errorf("the master exited before it connected: %v", err)
	case <-ctx.Done():
		// It goes on: a slow login may still finish, for the next launch.
		return fmt.Errorf("wait for the master to connect: %w", context.Cause(ctx))
	}
}

// alive: a master answers at path.
func alive(ctx context.Context, path string) bool {
	c, err := dialControl(ctx, path)
	if err != nil {
		return false
	}
	defer c.Close()
	_, err = c.alive()
	return err == nil
}

// control is a client's connection to a master's socket, for the requests
// that manage it (alive, status, terminate).
type control struct {
	*net.UnixConn
	rid uint32
}

func dialControl(ctx context.Context, path string) (*control, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s", ErrNoMaster, path)
		}
		return nil, err
	}
	c := &control{UnixConn: nc.(*net.UnixConn)}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second)) // a local socket answers at once or not at all
	}
	if _, err := c.Write(newPacket(muxHello).u32(muxVersion).frame()); err != nil {
		c.Close()
		return nil, err
	}
	typ, f, err := readPacket(c.UnixConn)
	if err == nil && (typ != muxHello || f.U32() != muxVersion) {
		err = errors.New("not a master speaking PROTOCOL.mux version 4")
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("master at %s: %w", path, err)
	}
	return c, nil
}

// request sends a request without fields and reads its reply.
func (c *control) request(typ uint32) (uint32, *openssh.Fields, error) {
	c.rid++
	if _, err := c.Write(newPacket(typ).u32(c.rid).frame()); err != nil {
		return 0, nil, err
	}
	rt, f, err := readPacket(c.UnixConn)
	if err != nil {
		return 0, nil, err
	}
	if rid := f.U32(); rid != c.rid {
		return 0, nil, fmt.Errorf("reply to request %d, expected %d", rid, c.rid)
	}
	if rt == muxFailure || rt == muxDenied {
		return rt, f, ParseFailure(f.Str())
	}
	return rt, f, nil
}

func (c *control) alive() (int, error) {
	typ, f, err := c.request(muxAliveCheck)
	if err == nil && typ != muxAlive {
		err = fmt.Errorf("unexpected reply %#x", typ)
	}
	if err != nil {
		return 0, err
	}
	return int(f.U32()), f.Err()
}

// Status asks the master at path how it is.
func Status(ctx context.Context, path string) (Info, error) {
	c, err := dialControl(ctx, path)
	if err != nil {
		return Info{}, err
	}
	defer c.Close()
	var in Info
	typ, f, err := c.request(muxGopykStatus)
	if err == nil && typ != muxGopykInfo {
		err = fmt.Errorf("unexpected reply %#x", typ)
	}
	if err != nil {
		// An OpenSSH master at a gopyk path? Say what answers.
		pid, aerr := c.alive()
		if aerr == nil {
			return Info{PID: pid, Socket: path}, fmt.Errorf("the master (pid %d) at %s does not say its state: %w", pid, path, err)
		}
		return Info{}, err
	}
	if err := json.Unmarshal([]byte(f.Str()), &in); err != nil {
		return Info{}, fmt.Errorf("master status: %w", err)
	}
	return in, nil
}

// Connect has the master at path connect, or wait for its dial in
// progress: nil once it is connected, else the dial's failure with its
// sshconf kind (errors.Is), as sshconf.Dial would have failed.
func Connect(ctx context.Context, path string) error {
	c, err := dialControl(ctx, path)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Time{}) // a dial has deadlines of its own
	}
	typ, _, err := c.request(muxGopykConnect)
	if err == nil && typ != muxOK {
		err = fmt.Errorf("unexpected reply %#x", typ)
	}
	return err
}

// Stop asks the master at path to exit now (its clients reconnect, and
// start another unless one is running). It returns once the master is gone.
func Stop(ctx context.Context, path string) error {
	c, err := dialControl(ctx, path)
	if err != nil {
		return err
	}
	defer c.Close()
	pid, err := c.alive()
	if err != nil {
		return err
	}
	if _, _, err := c.request(muxTerminate); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("stop the master (pid %d): %w", pid, err)
	}
	for ctx.Err() == nil {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the master (pid %d) did not exit: %w", pid, ctx.Err())
}
