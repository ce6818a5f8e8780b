package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/provisioner"
)

// Deadlines around provisioner calls. The provisioner enforces the spec's
// own timeouts; these only guarantee the launcher never waits forever.
const (
	interruptDeadline = 15 * time.Second
	slack             = 30 * time.Second
)

// launcher is one run of gopyk-kernel.
type launcher struct {
	o      options
	d      deps
	log    *slog.Logger
	stderr io.Writer
	tty    bool
	ask    func(question string) (yes bool, err error) // nil without a terminal

	runtimeDir  string
	spec        *kernelspec.Spec
	conn        connFile
	persistent  bool
	persistPath string // "" when not persistent
	k           kernelHandle
	disp        *dispatcher
}

func run(ctx context.Context, o options, stdin *os.File, stderr io.Writer, d deps) error {
	if o.existing != "" && o.persistFile != "" {
		return usagef("--existing re-attaches using its own persistence file; drop --persistent-file")
	}
	if o.existing == "" && o.kernel == "" {
		return usagef("--kernel NAME is required (gopyk list shows the names)")
	}
	l := &launcher{
		o:          o,
		d:          d,
		log:        newLogger(stderr, verbosityLevel(o.verbose)),
		stderr:     stderr,
		tty:        stdin != nil && d.isTTY(stdin),
		runtimeDir: d.runtimeDir(),
	}
	if l.tty {
		l.ask = func(q string) (bool, error) { return askYes(stdin, stderr, q) }
	}
	// Signals are caught before anything slow: a SIGINT from Jupyter (sent to
	// the whole process group) during a launch must not kill the launcher.
	sigs, stopSigs := d.signals()
	defer stopSigs()
	stop := make(chan struct{})
	l.disp = newDispatcher(ctx, l.log)
	l.disp.abortOnInterrupt = l.tty
	var parentGone, interrupts <-chan struct{}
	if d.parentGone != nil {
		parentGone = d.parentGone(stop, l.log)
	}
	if d.interrupts != nil {
		interrupts = d.interrupts(stop, l.log)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.disp.loop(stop, sigs, parentGone, interrupts)
	}()
	stopMenu := func() {}
	defer func() {
		close(stop)
		<-done
		stopMenu()
		l.disp.cancelWork()
	}()

	if err := l.start(); err != nil {
		l.conn.remove()
		if r, ok := l.disp.finalRequest(); ok {
			l.log.Info("launch aborted", "by", r.why)
			return nil
		}
		return err
	}
	if o.leave {
		return l.leave("--leave")
	}
	l.logSignalTable()
	if l.tty && menuAvailable {
		stopMenu = l.startMenu(stdin)
	}
	return l.loop()
}

// start resolves the spec and files, then launches or attaches.
func (l *launcher) start() error {
	specName := l.o.kernel
	var prev *persisted
	if l.o.existing != "" {
		path, err := resolveExisting(l.o.existing, l.runtimeDir)
		if err != nil {
			return err
		}
		p, err := loadPersisted(path)
		if err != nil {
			return err
		}
		if specName != "" && !strings.EqualFold(specName, p.SpecName) {
			return fmt.Errorf("persistence file %s belongs to kernel spec %q, not %q; pass --kernel %s or leave --kernel out", path, p.SpecName, specName, p.SpecName)
		}
		specName, prev = p.SpecName, &p
		// Re-attached kernels stay persistent (sshpyk shut them down on exit);
		// SIGUSR2 or the Ctrl+D menu still shuts them down.
		l.persistent, l.persistPath = true, path
	}
	spec, err := l.d.findSpec(specName)
	if err != nil {
		return fmt.Errorf("%w; `gopyk list` shows the gopyk kernel specs", err)
	}
	if spec.Gopyk == nil {
		return fmt.Errorf("kernel spec %q (%s) has no metadata.gopyk, so gopyk-kernel cannot launch it; create one with `gopyk add`", specName, spec.Dir)
	}
	l.spec = spec

	id := idFromConnFile(l.o.connFile)
	if id == "" {
		id = newID()
	}
	if prev == nil {
		l.persistent = l.o.persistent || l.o.persistFile != "" || l.o.leave
		l.persistPath = l.choosePersistPath(id)
	}
	if prev != nil && l.o.connFile == "" {
		l.conn = reuseConnFile(*prev, l.runtimeDir, id, specName)
	} else if l.conn, err = openConnFile(l.o.connFile, l.runtimeDir, id, specName, prev == nil); err != nil {
		return err
	}

	cfg := provisioner.Config{
		SpecName: specName,
		Gopyk:    *spec.Gopyk,
		Local:    l.conn.info,
		// Jupyter's "key": "" means unsigned messages; the kernel gets the same.
		Unsigned:    prev == nil && !l.conn.owned && l.conn.info.Key == "",
		Persistent:  l.persistent,
		Log:         l.log,
		Interactive: true, // sshconf finds the terminal even when stdin is a pipe
		KernelArgs:  l.o.kernelArgs,
	}
	if prev != nil && len(l.o.kernelArgs) > 0 {
		l.log.Warn("re-attaching keeps the running kernel's arguments; ignored", "kernel_args", strings.Join(l.o.kernelArgs, " "))
	}
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(l.disp.workCtx, l.launchDeadline())
	defer cancel()
	if cfg.Unsigned {
		l.log.Info("the connection file's key is empty: messages are not signed, as Jupyter does", "connection_file", l.conn.path)
	}
	if prev != nil {
		l.log.Info("re-attaching", "spec", specName, "host", prev.Host, "persistence_file", l.persistPath)
		l.k, err = l.d.start.Attach(ctx, cfg, prev.State)
		if errors.Is(err, provisioner.ErrGone) {
			return l.staleFile(err)
		}
	} else {
		l.log.Info("launching", "spec", specName, "host", spec.Gopyk.SSHHostAlias)
		l.k, err = l.d.start.Launch(ctx, cfg)
	}
	if err != nil {
		return err
	}
	// From here on signals act on the kernel; they queue until the loop runs.
	l.disp.setReady()
	if l.d.steady != nil {
		l.d.steady()
	}
	if prev != nil {
		if err := l.adoptLocal(); err != nil {
			return l.abandon(err)
		}
	}
	if err := l.savePersisted(); err != nil {
		return l.abandon(err)
	}
	if l.conn.owned {
		l.log.Info("To connect a client: jupyter console --existing " + l.shortPath(l.conn.path))
	}
	if l.persistent {
		l.log.Info(fmt.Sprintf("To re-attach: gopyk-kernel --kernel %s --existing %s", specName, l.shortPath(l.persistPath)))
	}
	// Last, so that whoever waits for this line finds the files and hints in place.
	l.log.Info("kernel ready", "spec", specName, "remote", l.k.State().RemoteHost, "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

// staleFile handles a persistence file whose kernel is gone: nothing is
// left to attach to, so the file only misleads. On a terminal it offers to
// delete it; otherwise the error says to.
func (l *launcher) staleFile(err error) error {
	msg := fmt.Sprintf("persistence file %s describes a kernel that is no longer running (%v)", l.persistPath, err)
	if l.ask != nil {
		if ok, aerr := l.ask(fmt.Sprintf("%s.\nDelete %s? [y/N] ", msg, l.persistPath)); aerr == nil && ok {
			if rerr := os.Remove(l.persistPath); rerr != nil {
				return fmt.Errorf("%s; deleting it failed: %w", msg, rerr)
			}
			return fmt.Errorf("%s; deleted it", msg)
		}
	}
	return fmt.Errorf("%s; delete it: rm %s", msg, l.persistPath)
}

// askYes asks q on w and reads one line from r: yes for y or yes.
func askYes(r io.Reader, w io.Writer, q string) (bool, error) {
	if _, err := io.WriteString(w, q); err != nil {
		return false, err
	}
	var line []byte
	b := make([]byte, 1)
	for len(line) < 64 {
		n, err := r.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
		}
		if err != nil {
			return false, err
		}
	}
	a := strings.ToLower(strings.TrimSpace(string(line)))
	return a == "y" || a == "yes", nil
}

// adoptLocal writes the connection file after an attach: the remote kernel
// keeps its own key, which replaced ours.
func (l *launcher) adoptLocal() error {
	local := l.k.Local()
	if !l.conn.owned && local.Key != l.conn.info.Key {
		l.log.Warn("the re-attached kernel has its own key: rewrote the connection file; clients that already read it must read it again", "connection_file", l.conn.path)
	}
	l.conn.info = local
	return l.conn.write()
}

// abandon undoes a launch whose files could not be written, so no kernel is
// left running that nobody can reach.
func (l *launcher) abandon(err error) error {
	ctx, cancel := context.WithTimeout(context.Background(), l.shutdownDeadline())
	defer cancel()
	if l.o.existing != "" {
		_ = l.k.Leave()
	} else if serr := l.k.Shutdown(ctx); serr != nil {
		l.log.Warn("shutdown after a failed start", "err", serr)
	}
	return err
}

// reuseConnFile gives a re-attached kernel the connection file and ports it
// had, when they are free, so clients that knew them find it again.
func reuseConnFile(p persisted, runtimeDir, id, specName string) connFile {
	cf := connFile{path: p.ConnectionFile, owned: true, info: p.Local}
	if cf.path == "" {
		cf.path = filepath.Join(runtimeDir, "kernel-"+id+".json")
	}
	if cf.info.IP == "" || cf.info.Transport != "tcp" || !portsFree(cf.info) {
		if ci, err := newConnInfo(specName); err == nil {
			cf.info = ci
		}
	}
	cf.info.KernelName = specName
	return cf
}

// choosePersistPath picks the persistence file of a new kernel. A file
// already there describes a kernel left running (a kernel that ended removed
// its file), so the default name steps aside rather than lose track of it;
// an explicit --persistent-file is the user's call, with a warning.
func (l *launcher) choosePersistPath(id string) string {
	if !l.persistent {
		return ""
	}
	path := l.o.persistFile
	if path == "" {
		path = persistPath(l.runtimeDir, id)
	}
	old, err := loadPersisted(path)
	switch {
	case err == nil && l.o.persistFile != "":
		l.log.Warn("overwriting a persistence file; the kernel it described can no longer be re-attached with it", "path", path, "host", old.Host, "kernel_pid", old.KernelPID)
	case err == nil:
		alt := persistPath(l.runtimeDir, newID())
		l.log.Info("a persistence file for a kernel left running already has this name; using another", "kept", path, "new", alt)
		return alt
	}
	return path
}

func (l *launcher) savePersisted() error {
	if !l.persistent {
		return nil
	}
	st := l.k.State()
	if st.SpecName == "" {
		st.SpecName = l.spec.Name
	}
	st.Persistent = true
	err := savePersisted(l.persistPath, persisted{State: st, ConnectionFile: absPath(l.conn.path), Local: l.conn.info})
	if err != nil {
		return fmt.Errorf("%w; fix the directory or pass --persistent-file", err)
	}
	l.log.Debug("persistence file written", "path", l.persistPath)
	return nil
}

func (l *launcher) removePersisted() {
	if l.persistPath != "" {
		if err := os.Remove(l.persistPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.log.Warn("could not remove the persistence file", "path", l.persistPath, "err", err)
		}
	}
}

func (l *launcher) launchDeadline() time.Duration {
	t := l.spec.Gopyk.LaunchTimeout
	if t <= 0 {
		t = kernelspec.DefaultLaunchTimeout
	}
	return time.Duration(t)*time.Second + slack
}

func (l *launcher) shutdownDeadline() time.Duration {
	t := l.spec.Gopyk.ShutdownTimeout
	if t <= 0 {
		t = kernelspec.DefaultShutdownTimeout
	}
	return time.Duration(t)*time.Second + slack
}

// shortPath is what to type after --existing: the base name for a file in
// the runtime dir (both commands search it), else an absolute path.
func (l *launcher) shortPath(p string) string {
	if filepath.Dir(absPath(p)) == absPath(l.runtimeDir) {
		return filepath.Base(p)
	}
	return absPath(p)
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
