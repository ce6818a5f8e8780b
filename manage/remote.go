package manage

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/master"
	"github.com/gopyk/gopyk/provisioner/remote"
	"github.com/gopyk/gopyk/sshconf"
	"github.com/gopyk/gopyk/transport"
	"github.com/gopyk/gopyk/wsproxy"
)

// remoteCheckTimeout bounds the remote checks of one spec: `gopyk list` never hangs
// on a host that does not answer.
var remoteCheckTimeout = 30 * time.Second

// remoteChecker runs the remote checks of `gopyk list`, dialling each host
// once however many specs use it.
type remoteChecker struct {
	mu    sync.Mutex
	conns map[string]*hostConn
}

type hostConn struct {
	once sync.Once
	c    transport.Conn
	err  error
	took time.Duration
}

func newRemoteChecker() *remoteChecker { return &remoteChecker{conns: map[string]*hostConn{}} }

func (rc *remoteChecker) conn(ctx context.Context, g kernelspec.Gopyk, route sshconf.Route) *hostConn {
	key := g.SSHHostAlias + "\x00" + g.SSHConfig
	rc.mu.Lock()
	hc := rc.conns[key]
	if hc == nil {
		hc = &hostConn{}
		rc.conns[key] = hc
	}
	rc.mu.Unlock()
	hc.once.Do(func() {
		t := time.Now()
		// Asks on the terminal when there is one, as ssh would.
		hc.c, hc.err = transport.Dial(ctx, route, transport.Options{Client: g.SSHClient, ConfigFile: g.SSHConfig, Interactive: true,
			Master: master.Enabled(g), MasterPersist: master.Persist(g, route.Target())})
		hc.took = time.Since(t)
	})
	return hc
}

func (rc *remoteChecker) close() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, hc := range rc.conns {
		if hc.c != nil {
			hc.c.Close()
		}
	}
}

// check is a RemoteChecks: connection, remote system, python, jupyter_client,
// and the remote kernel spec, from one exec of the remote launcher.
func (rc *remoteChecker) check(ctx context.Context, s *kernelspec.Spec, route sshconf.Route) []Check {
	ctx, cancel := context.WithTimeout(ctx, remoteCheckTimeout)
	defer cancel()
	g := *s.Gopyk
	t := route.Target()
	hc := rc.conn(ctx, g, route)
	if hc.err != nil {
		return append([]Check{{Label: "SSH Connection", Status: StatusError, Message: oneLine(hc.err.Error())}},
			unknownRemote("not checked: no connection")[1:]...)
	}
	conn := Check{Label: "SSH Connection", Status: StatusOK,
		Message: fmt.Sprintf("%s@%s:%d (%v)", t.User, t.HostName, t.Port, hc.took.Round(time.Millisecond))}
	if ws, ok := wsproxy.ParseCommand(t.ProxyCommand); ok {
		conn.Message = fmt.Sprintf("%s %s (%v)", t.User, wsDescription(ws), hc.took.Round(time.Millisecond))
	}
	if via := hc.c.Via(); via != "native" {
		conn.Message += " via " + via
	}

	sess, err := hc.c.NewSession()
	if err != nil {
		return append([]Check{conn, {Label: "Remote System", Status: StatusError, Message: "open an exec session: " + err.Error()}},
			unknownRemote("not checked")[2:]...)
	}
	r, err := remote.Exec(ctx, sess, remote.Params{Action: remote.ActionInspect, KernelName: g.RemoteKernelName,
		Python: g.RemotePython, Pre: g.RemotePre, Launcher: g.Launcher})
	if err != nil {
		// The launcher did not run: the python (or the pre-command) is the problem.
		return []Check{conn,
			{Label: "Remote System", Status: StatusUnknown, Message: "not checked"},
			{Label: "Remote Python", Status: StatusError, Message: oneLine(err.Error())},
			{Label: "Remote Kernel Name", Status: StatusUnknown, Message: "not checked: no usable python"},
		}
	}
	checks := []Check{conn,
		{Label: "Remote System", Status: StatusInfo, Message: r.Uname},
		{Label: "Remote Python", Status: StatusOK, Message: fmt.Sprintf("%s (Python %s)", r.PythonExecutable, r.Python)},
	}
	if r.CacheWarning != "" {
		// A home that cannot hold the launcher: it goes to /tmp, or is
		// uploaded on every launch and reconnect.
		checks = append(checks, Check{Label: "Launcher Cache", Status: StatusWarning, Message: oneLine(r.CacheWarning)})
	}
	if r.JupyterClient != "" {
		checks = append(checks, Check{Label: "Remote jupyter_client", Status: StatusOK, Message: r.JupyterClient})
	} else {
		checks = append(checks, Check{Label: "Remote jupyter_client", Status: StatusWarning,
			Message: "not importable by this python (ipykernel needs it; gopyk itself does not)"})
	}
	checks = append(checks, forwardingCheck(ctx, hc.c, g, s.Name))
	if g.Launcher == "slurm" {
		checks = append(checks, slurmCheck(r, s.Name))
	}
	if r.KernelError != "" {
		msg := r.KernelError
		if len(r.KernelNames) > 0 {
			msg += "; fix: gopyk edit --kernel-name " + s.Name + " --remote-kernel-name NAME with one of: " + strings.Join(r.KernelNames, ", ")
		}
		return append(checks, Check{Label: "Remote Kernel Name", Status: StatusError, Message: oneLine(msg)})
	}
	mode := r.InterruptMode
	if mode == "" {
		mode = "signal"
	}
	checks = append(checks,
		Check{Label: "Remote Kernel Name", Status: StatusOK, Message: fmt.Sprintf("%s (%s)", r.KernelName, r.SpecDir)},
		Check{Label: "Remote Interrupt Mode", Status: StatusInfo, Message: mode},
		Check{Label: "Remote Command", Status: StatusInfo, Message: strings.Join(r.Argv, " ")})
	if c, ok := importCheck(ctx, hc.c, g, r.Argv); ok {
		checks = append(checks, c)
	}
	return checks
}

// slurmCheck says whether the login node has the Slurm commands a slurm
// launcher runs there.
func slurmCheck(r *remote.Reply, spec string) Check {
	c := Check{Label: "Slurm Commands"}
	switch {
	case r.SlurmCommands == nil:
		c.Status, c.Message = StatusUnknown, "not checked: the remote launcher did not report them"
	case len(r.SlurmMissing) > 0:
		c.Status = StatusError
		c.Message = strings.Join(r.SlurmMissing, ", ") + " not found on the PATH of " + r.Hostname +
			"; make them available with 'gopyk edit --kernel-name " + spec + " --remote-pre \"module load slurm\"' or use --launcher local"
	case r.SlurmError != "":
		c.Status, c.Message = StatusError, oneLine(r.SlurmError)
	default:
		c.Status, c.Message = StatusOK, oneLine(r.SlurmVersion+" ("+r.SlurmCommands["sbatch"]+")")
	}
	return c
}
