package manage

import (
	"context"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/sshconf"
)

// Status is the outcome of one check; `gopyk list` shows it as a marker.
type Status string

const (
	StatusOK      Status = "ok"      // (v)
	StatusError   Status = "error"   // (x)
	StatusWarning Status = "warning" // (!)
	StatusInfo    Status = "info"    // (i)
	StatusUnknown Status = "unknown" // (?) not checked
)

// Check is one line of `gopyk list`: a top-level line when Label is set
// ("SSH Connection"), a line under a host when Key is set ("identityfile").
type Check struct {
	Label   string `json:"label,omitempty"`
	Key     string `json:"key,omitempty"`
	Status  Status `json:"status"`
	Message string `json:"message"`
}

// RemoteChecks checks what only the remote host can tell (connection, remote
// system, python, kernel spec) for one spec whose route resolved. It returns
// top-level lines, in display order.
type RemoteChecks func(ctx context.Context, spec *kernelspec.Spec, route sshconf.Route) []Check

// remoteLabels are the lines RemoteChecks fills in, in sshpyk's order.
var remoteLabels = []string{"SSH Connection", "Remote System", "Remote Python", "Remote Kernel Name"}

func unknownRemote(why string) []Check {
	checks := make([]Check, len(remoteLabels))
	for i, l := range remoteLabels {
		checks[i] = Check{Label: l, Status: StatusUnknown, Message: why}
	}
	return checks
}

// listReport is everything `gopyk list` shows; --json prints it as is.
type listReport struct {
	// OK is the verdict, and the exit status: false (exit 1) when a spec
	// has an (x) line or a kernel.json could not be read.
	OK      bool           `json:"ok"`
	Failed  []string       `json:"failed"` // names of the specs with an (x)
	Kernels []kernelReport `json:"kernels"`
	Errors  []string       `json:"errors"` // specs that could not be read
}

type kernelReport struct {
	Name          string     `json:"name"`
	Kind          string     `json:"kind"` // "local" or "ssh"
	DisplayName   string     `json:"display_name"`
	ResourceDir   string     `json:"resource_dir"`
	SpecFile      string     `json:"spec_file"`
	Argv          []string   `json:"argv"`
	Language      string     `json:"language"`
	InterruptMode string     `json:"interrupt_mode"`
	SSH           *sshReport `json:"ssh,omitempty"`
}

type sshReport struct {
	Settings         kernelspec.Gopyk `json:"settings"`
	Command          string           `json:"command"` // simplified, for people
	InterruptMode    Check            `json:"interrupt_mode"`
	SSHConfig        *Check           `json:"ssh_config,omitempty"`
	SSHClient        *Check           `json:"ssh_client,omitempty"` // which client logs in, once the route resolved
	Route            []hostReport     `json:"route"`                // dial order: jump hosts first, the target last
	RouteError       *Check           `json:"route_error,omitempty"`
	Remote           []Check          `json:"remote"`
	Launch           *Check           `json:"launch,omitempty"` // --launch: how the real launch went
	LaunchSteps      []launchStep     `json:"launch_steps,omitempty"`
	Launcher         string           `json:"launcher"` // local or slurm
	LaunchTimeout    int              `json:"launch_timeout"`
	QueueTimeout     int              `json:"queue_timeout,omitempty"` // launcher slurm
	ShutdownTimeout  int              `json:"shutdown_timeout"`
	Grace            int              `json:"grace"`             // seconds
	ReconnectTimeout int              `json:"reconnect_timeout"` // seconds
}

type hostReport struct {
	Alias         string   `json:"alias"`
	Jump          bool     `json:"jump"`
	HostName      string   `json:"hostname"`
	Port          int      `json:"port"`
	User          string   `json:"user"`
	IdentityFiles []string `json:"identity_files"`
	ProxyJump     string   `json:"proxy_jump,omitempty"`
	ProxyCommand  string   `json:"proxy_command,omitempty"`
	WebSocket     string   `json:"websocket,omitempty"` // the URL (query hidden) when ProxyCommand is gopyk ws-proxy
	Checks        []Check  `json:"checks"`
}

// failed reports whether any line of k is an (x).
func (k kernelReport) failed() bool {
	if k.SSH == nil {
		return false
	}
	s := k.SSH
	all := append([]Check{s.InterruptMode}, s.Remote...)
	for _, c := range []*Check{s.SSHConfig, s.SSHClient, s.RouteError, s.Launch} {
		if c != nil {
			all = append(all, *c)
		}
	}
	for _, h := range s.Route {
		all = append(all, h.Checks...)
	}
	for _, c := range all {
		if c.Status == StatusError {
			return true
		}
	}
	return false
}
