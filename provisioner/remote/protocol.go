package remote

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gopyk/gopyk/wire"
)

// Actions of an exec session.
const (
	ActionLaunch       = "launch"        // start a supervisor and its kernel
	ActionStatus       = "status"        // is the supervisor of Params.RunDir alive? (Reply as for launch)
	ActionList         = "list"          // every supervisor of this user (Reply.Kernels); removes stale run dirs
	ActionInspect      = "inspect"       // host, python, jupyter_client and the kernel spec, for gopyk list
	ActionControl      = "control"       // one control request (Params.Request) to the supervisor of Params.RunDir
	ActionMux          = "mux"           // the session carries streams to remote unix sockets (see Carrier)
	ActionForwardProbe = "forward_probe" // a unix socket to reach by forwarding (see ProbeForward)
)

// Error codes of a remote error reply (ReplyError.Code).
const (
	CodeUnknownKernel = "unknown_kernel" // no kernel spec of that name; KernelNames lists those found
	CodeBadSpec       = "bad_spec"       // the remote kernel.json is unreadable or has wrong types
	CodeKernelDied    = "kernel_died"    // the kernel exited while starting; StderrTail says why
	CodeTimeout       = "timeout"        // the kernel did not open its sockets within LaunchTimeout
	CodeGone          = "gone"           // no supervisor at RunDir (kernel exited or shut down)
	CodeTooOld        = "python_too_old" // the remote python is older than 3.6
	CodeUpload        = "upload"         // the uploaded script did not match its hash
	CodeRunDir        = "run_dir"        // no private run directory could be made
	CodeBadParams     = "bad_params"     // a bug on our side: the parameters were rejected
	CodeBusy          = "busy"           // restart while the kernel is starting or stopping
	CodeNotRunning    = "not_running"    // interrupt while the kernel is not running
	CodeInternal      = "internal"       // a bug in the launcher
	CodeSlurm         = "slurm"          // a Slurm command failed or is missing; Error quotes Slurm
	CodeQueueTimeout  = "queue_timeout"  // the Slurm job stayed pending past QueueTimeout and was cancelled
	CodeNoStream      = "no_stream"      // a stream to resume that the supervisor no longer has
	CodeConnect       = "connect_failed" // the supervisor could not reach the kernel's socket for a stream
	CodeNoRoom        = "no_room"        // no run dir could be written: every candidate is full, over quota or read-only; Error names them
)

// Params are the launch parameters, sent as one JSON line on stdin (so the
// key never appears on a command line).
type Params struct {
	Action          string            // ActionLaunch, ActionStatus or ActionList
	KernelName      string            // remote kernel spec name (case-insensitive)
	Key             string            // HMAC key; the remote connection file gets it; "" (with ActionLaunch): unsigned, as Jupyter
	SignatureScheme string            // default hmac-sha256
	Transport       string            // "ipc" (default) or "tcp"
	RunDir          string            // ActionStatus: the run dir a launch returned
	Persistent      bool              // no grace limit: the kernel outlives its leases
	Grace           time.Duration     // how long the kernel waits for a lease; 0 = 10 min
	ShutdownTimeout time.Duration     // Control.Shutdown's default wait before SIGTERM; 0 = 10 s
	LaunchTimeout   time.Duration     // how long the kernel may take to open its sockets; 0 = 60 s
	KillAfter       time.Duration     // SIGTERM → SIGKILL delay when stopping the kernel; 0 = 5 s
	Env             map[string]string // extra environment for the kernel (after the spec's env)
	Cwd             string            // the kernel's working directory; default the remote home
	Tag             string            // free text shown by ActionList (e.g. the local spec name)
	Request         any               // ActionControl: the request, as on the control socket
	Launcher        string            // "" / "local": a child of the supervisor; "slurm": a batch job
	LauncherArgs    string            // launcher slurm: sbatch options, split as sh would
	QueueTimeout    time.Duration     // launcher slurm: how long the job may pend; 0 = 600 s
	KernelArgs      []string          // appended to the kernel's argv (after {connection_file} is filled in)
	IOPubBacklog    int64             // iopub bytes held for a slow link before the relay stops reading the kernel's; 0 = 1 GiB

	Progress func(msg string) // called with each progress line of a launch (a queued job); may be nil (not sent)
	// OnControl is called once a launch has bound the supervisor's control
	// socket, before the kernel starts: the lease and the streams can be
	// opened from then on (streams wait at the supervisor until the kernel
	// accepts), so they are ready when the kernel is. May be nil (not sent).
	OnControl func(control, runDir string)

	Python string // remote python for Command; default python3 (not sent)
	Pre    string // shell commands run before the launcher (not sent)
}

type paramsJSON struct {
	Action          string            `json:"action"`
	KernelName      string            `json:"kernel_name,omitempty"`
	Key             *string           `json:"key,omitempty"` // always sent with a launch: "" is Jupyter's unsigned mode
	SignatureScheme string            `json:"signature_scheme,omitempty"`
	Transport       string            `json:"transport,omitempty"`
	RunDir          string            `json:"run_dir,omitempty"`
	Persistent      bool              `json:"persistent,omitempty"`
	Grace           *float64          `json:"grace_seconds,omitempty"`
	ShutdownTimeout *float64          `json:"shutdown_timeout,omitempty"`
	LaunchTimeout   *float64          `json:"launch_timeout,omitempty"`
	KillAfter       *float64          `json:"kill_after,omitempty"`
	Env             map[string]string `json:"env,omitempty"`
	Cwd             string            `json:"cwd,omitempty"`
	Tag             string            `json:"tag,omitempty"`
	Request         any               `json:"request,omitempty"`
	Launcher        string            `json:"launcher,omitempty"`
	LauncherArgs    string            `json:"launcher_args,omitempty"`
	QueueTimeout    *float64          `json:"queue_timeout,omitempty"`
	KernelArgs      []string          `json:"kernel_args,omitempty"`
	IOPubBacklog    int64             `json:"iopub_backlog,omitempty"`
}

func seconds(d time.Duration) *float64 {
	if d <= 0 {
		return nil
	}
	s := d.Seconds()
	return &s
}

func (p Params) line() ([]byte, error) {
	var key *string
	if p.Action == ActionLaunch || p.Key != "" {
		key = &p.Key
	}
	b, err := json.Marshal(paramsJSON{
		Action: p.Action, KernelName: p.KernelName, Key: key, SignatureScheme: p.SignatureScheme,
		Transport: p.Transport, RunDir: p.RunDir, Persistent: p.Persistent,
		Grace: seconds(p.Grace), ShutdownTimeout: seconds(p.ShutdownTimeout), LaunchTimeout: seconds(p.LaunchTimeout),
		KillAfter: seconds(p.KillAfter),
		Env:       p.Env, Cwd: p.Cwd, Tag: p.Tag, Request: p.Request,
		Launcher: p.Launcher, LauncherArgs: p.LauncherArgs, QueueTimeout: seconds(p.QueueTimeout),
		KernelArgs: p.KernelArgs, IOPubBacklog: p.IOPubBacklog,
	})
	if err != nil {
		return nil, fmt.Errorf("encode launch parameters: %w", err)
	}
	return append(b, '\n'), nil
}

// Channels are the kernel's five sockets on the remote: unix socket paths
// (transport ipc) or host:port (tcp).
type Channels struct {
	Shell   string `json:"shell"`
	IOPub   string `json:"iopub"`
	Stdin   string `json:"stdin"`
	Control string `json:"control"`
	HB      string `json:"hb"`
}

// Reply is what launch, status and the supervisor's status op return.
type Reply struct {
	OK            bool     `json:"ok"`
	SupervisorPID int      `json:"supervisor_pid"`
	KernelPID     int      `json:"kernel_pid"` // 0 while the kernel is not running
	State         string   `json:"state"`      // starting, running, stopping, exited
	RunDir        string   `json:"run_dir"`
	Control       string   `json:"control"`         // the supervisor's control socket (unix)
	ConnFile      string   `json:"connection_file"` // the kernel's connection file (0600; holds the key)
	Transport     string   `json:"transport"`       // ipc or tcp
	IP            string   `json:"ip"`              // ipc: socket path prefix; tcp: 127.0.0.1
	Ports         []int    `json:"ports"`           // shell, iopub, stdin, control, hb
	Channels      Channels `json:"channels"`
	InterruptMode string   `json:"interrupt_mode"` // signal or message, from the remote spec
	Argv          []string `json:"argv"`           // the kernel's command line
	KernelName    string   `json:"kernel_name"`
	SpecDir       string   `json:"spec_dir"`
	Persistent    bool     `json:"persistent"`
	GraceSeconds  float64  `json:"grace_seconds"`
	Leases        int      `json:"leases"`
	// LeaseOps are the requests a lease may carry (Lease.Call): the reply
	// to a lease request; older supervisors carry none.
	LeaseOps []string `json:"lease_ops,omitempty"`
	Streams  int      `json:"streams"` // relayed client connections, attached or waiting
	Started  float64  `json:"started"` // unix time the supervisor started
	Restarts int      `json:"restarts"`
	Tag      string   `json:"tag"`

	// Launcher slurm: the kernel's batch job.
	Launcher  string `json:"launcher,omitempty"`
	JobID     string `json:"job_id,omitempty"`
	JobState  string `json:"job_state,omitempty"` // Slurm's, e.g. RUNNING, PENDING, CANCELLED
	JobReason string `json:"job_reason,omitempty"`
	Node      string `json:"node,omitempty"` // the compute node running the kernel

	Hostname         string `json:"hostname"`
	User             string `json:"user"`
	Uname            string `json:"uname"`  // like uname -a
	Python           string `json:"python"` // version of the python running the launcher
	PythonExecutable string `json:"python_executable"`

	JupyterClient string   `json:"jupyter_client,omitempty"` // ActionInspect: its version, "" if not importable
	KernelError   string   `json:"kernel_error,omitempty"`   // ActionInspect: why the kernel spec was not found
	Kernels       []Reply  `json:"kernels,omitempty"`        // ActionList
	Removed       []string `json:"removed,omitempty"`        // ActionList: stale run dirs removed
	CacheWarning  string   `json:"cache_warning,omitempty"`

	// ActionInspect with Launcher slurm: the Slurm commands on the login node.
	SlurmCommands map[string]string `json:"slurm_commands,omitempty"` // name → path, "" if missing
	SlurmMissing  []string          `json:"slurm_missing,omitempty"`
	SlurmVersion  string            `json:"slurm_version,omitempty"`
	SlurmError    string            `json:"slurm_error,omitempty"`

	// Filled on error replies (OK false); Run turns them into *ReplyError.
	Code        string   `json:"code,omitempty"`
	Error       string   `json:"error,omitempty"`
	KernelNames []string `json:"kernel_names,omitempty"`
	ExitCode    *int     `json:"exit_code,omitempty"`
	Signal      int      `json:"signal,omitempty"`
	StderrTail  string   `json:"stderr_tail,omitempty"`
}

// RemoteConnInfo is the remote kernel's connection info with key.
func (r *Reply) RemoteConnInfo(key, scheme string) wire.ConnInfo {
	ci := wire.ConnInfo{IP: r.IP, Key: key, Transport: r.Transport, SignatureScheme: scheme, KernelName: r.KernelName}
	if len(r.Ports) == 5 {
		ci.ShellPort, ci.IOPubPort, ci.StdinPort, ci.ControlPort, ci.HBPort = r.Ports[0], r.Ports[1], r.Ports[2], r.Ports[3], r.Ports[4]
	}
	return ci
}

// Network is the network to dial the channels with: "unix" (ipc) or "tcp".
func (r *Reply) Network() string {
	if r.Transport == "tcp" {
		return "tcp"
	}
	return "unix"
}

func (r *Reply) err() error {
	if r.OK {
		return nil
	}
	return &ReplyError{Code: r.Code, Message: r.Error, KernelNames: r.KernelNames, ExitCode: r.ExitCode,
		Signal: r.Signal, StderrTail: r.StderrTail, Argv: r.Argv}
}

// ReplyError is an error the remote launcher or supervisor reported.
type ReplyError struct {
	Code        string // one of the Code constants
	Message     string
	KernelNames []string // CodeUnknownKernel: the names that exist
	ExitCode    *int     // CodeKernelDied
	Signal      int      // CodeKernelDied: the signal that killed it
	StderrTail  string   // CodeKernelDied, CodeTimeout: last lines the kernel printed
	Argv        []string
}

func (e *ReplyError) Error() string {
	msg := "remote: " + e.Message
	if e.StderrTail != "" {
		msg += ": " + oneLine(e.StderrTail, 600)
	}
	return msg
}

// ErrNoReply means the remote side ended without a final reply.
var ErrNoReply = errors.New("the remote launcher ended without a reply")

// NoReplyError is ErrNoReply with what was seen of the exec session.
type NoReplyError struct {
	Python string // the remote python of the command
	Pre    string // the pre-command, if any
	PreOK  bool   // the pre-command succeeded (or there was none)
	Err    error  // the read error, nil at EOF
}

func (e *NoReplyError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%v: %v", ErrNoReply, e.Err)
	}
	return ErrNoReply.Error()
}

func (e *NoReplyError) Unwrap() error { return ErrNoReply }

// ProtocolError is a framed line that is not a valid reply.
type ProtocolError struct {
	Line string // the offending line, shortened
	Err  error
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("malformed reply from the remote launcher (%v): %q", e.Err, e.Line)
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// maxLine bounds one line of remote output; longer noise is skipped, a longer
// framed line is an error.
const maxLine = 1 << 20

// frame is one framed line: a request from the bootstrap (Op) or a reply.
type frame struct {
	Op      string
	Msg     string // Op "progress"
	Control string // Op "control": the control socket
	RunDir  string // Op "control"
	Reply   *Reply
}

// parseFrame finds a framed line in line (rc noise may precede the magic on
// the same line). ok is false for lines that carry no frame.
func parseFrame(line []byte) (f frame, ok bool, err error) {
	i := bytes.Index(line, []byte(Magic))
	if i < 0 {
		return frame{}, false, nil
	}
	body := bytes.TrimRight(line[i+len(Magic):], "\r\n")
	var probe struct {
		Op      *string `json:"op"`
		Message string  `json:"message"`
		Control string  `json:"control"`
		RunDir  string  `json:"run_dir"`
		OK      *bool   `json:"ok"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return frame{}, true, &ProtocolError{Line: shorten(string(body), 200), Err: err}
	}
	if probe.Op != nil {
		if *probe.Op == "" {
			return frame{}, true, &ProtocolError{Line: shorten(string(body), 200), Err: errors.New("empty op")}
		}
		return frame{Op: *probe.Op, Msg: probe.Message, Control: probe.Control, RunDir: probe.RunDir}, true, nil
	}
	if probe.OK == nil {
		return frame{}, true, &ProtocolError{Line: shorten(string(body), 200), Err: errors.New(`neither "op" nor "ok"`)}
	}
	var r Reply
	if err := json.Unmarshal(body, &r); err != nil {
		return frame{}, true, &ProtocolError{Line: shorten(string(body), 200), Err: err}
	}
	if !r.OK && r.Error == "" {
		r.Error = "unspecified error (code " + strconv.Quote(r.Code) + ")"
	}
	return frame{Reply: &r}, true, nil
}

// readLine returns the next line, skipping (as noise) lines longer than
// maxLine that carry no frame.
func readLine(br *bufio.Reader) ([]byte, error) {
	var long bool
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if bytes.Contains(line, []byte(Magic)) {
				return nil, &ProtocolError{Line: shorten(string(line), 200), Err: errors.New("framed line too long")}
			}
			long = true
			continue
		}
		if long {
			if bytes.Contains(line, []byte(Magic)) {
				return nil, &ProtocolError{Line: shorten(string(line), 200), Err: errors.New("framed line too long")}
			}
			long = false
			if err != nil {
				return nil, err
			}
			continue
		}
		if err != nil && len(line) > 0 && err == io.EOF {
			return line, nil // a last line without newline
		}
		return line, err
	}
}

// Run speaks the exec protocol: it sends p on stdin, uploads the launcher when the
// remote asks for it, skips non-framed output and returns the final reply. An
// error reply becomes a *ReplyError; EOF without a reply a *NoReplyError. Keep
// stdin open until Run returns: on a launch the remote treats stdin EOF as
// "give up". Run does not close anything: on ctx's end it returns at once,
// and the caller must close the session so that the reader goroutine ends.
func Run(ctx context.Context, stdin io.Writer, stdout io.Reader, p Params) (*Reply, error) {
	return run(ctx, stdin, bufio.NewReaderSize(stdout, 64<<10), p)
}

// run is Run on a buffered stdout; after a reply, br holds exactly what the
// remote wrote after the reply's line (the proxied stream).
func run(ctx context.Context, stdin io.Writer, br *bufio.Reader, p Params) (*Reply, error) {
	line, err := p.line()
	if err != nil {
		return nil, err
	}
	type result struct {
		f   frame
		err error
	}
	frames := make(chan result, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			l, err := readLine(br)
			var f frame
			var ok bool
			if err == nil || (err == io.EOF && len(l) > 0) {
				var perr error
				f, ok, perr = parseFrame(l)
				if perr != nil {
					err = perr
				} else if !ok && err == nil {
					continue
				}
			}
			if ok || err != nil {
				select {
				case frames <- result{f, err}:
				case <-done:
					return
				}
			}
			if err != nil || f.Reply != nil {
				return // the final frame: br now belongs to the caller
			}
		}
	}()
	// A failed write means the remote side ended (a failing pre-command, a
	// missing python): what it said on the way out is the better error, so
	// keep reading until its EOF.
	_, _ = stdin.Write(line)
	preOK := strings.TrimSpace(p.Pre) == ""
	for {
		var res result
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("remote launcher: %w", context.Cause(ctx))
		case res = <-frames:
		}
		if res.err != nil {
			var pe *ProtocolError
			if errors.As(res.err, &pe) {
				return nil, res.err
			}
			nr := &NoReplyError{Python: p.Python, Pre: p.Pre, PreOK: preOK}
			if res.err != io.EOF {
				nr.Err = res.err
			}
			return nil, nr
		}
		switch res.f.Op {
		case "":
			if err := res.f.Reply.err(); err != nil {
				return nil, err
			}
			return res.f.Reply, nil
		case "pre_ok":
			preOK = true
		case "progress":
			if p.Progress != nil {
				p.Progress(res.f.Msg)
			}
		case "control":
			if p.OnControl != nil && res.f.Control != "" {
				p.OnControl(res.f.Control, res.f.RunDir)
			}
		case "upload":
			if _, err := fmt.Fprintf(stdin, "%d\n", len(pkg.upload)); err == nil {
				_, _ = stdin.Write(pkg.upload) // on failure, the remote's EOF says why
			}
		default:
			return nil, &ProtocolError{Line: res.f.Op, Err: errors.New("unknown request")}
		}
	}
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// oneLine joins the last lines of s with " | " and keeps its last n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(s), "\n", " | ")), " ")
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
