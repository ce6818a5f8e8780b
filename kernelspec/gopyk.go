package kernelspec

// Gopyk is what `gopyk add` writes under metadata.gopyk in kernel.json. It is
// everything gopyk-kernel needs to launch the remote kernel; the spec's argv
// only names the spec.
type Gopyk struct {
	SSHHostAlias     string `json:"ssh_host_alias"`
	SSHConfig        string `json:"ssh_config,omitempty"`        // passed to ssh as -F
	RemotePython     string `json:"remote_python,omitempty"`     // default: python3 on the remote PATH
	RemoteKernelName string `json:"remote_kernel_name"`          // kernel spec name on the remote
	RemotePre        string `json:"remote_pre,omitempty"`        // shell commands run before the launcher
	LaunchTimeout    int    `json:"launch_timeout,omitempty"`    // seconds; 0 = DefaultLaunchTimeout
	ShutdownTimeout  int    `json:"shutdown_timeout,omitempty"`  // seconds; 0 = DefaultShutdownTimeout
	Transport        string `json:"transport,omitempty"`         // "ipc" (default) or "tcp"
	Launcher         string `json:"launcher,omitempty"`          // "" / "local" or "slurm"
	LauncherArgs     string `json:"launcher_args,omitempty"`     // extra arguments for the launcher (e.g. sbatch flags)
	Grace            int    `json:"grace,omitempty"`             // seconds a kernel waits for a lost launcher; 0 = DefaultGrace
	ReconnectTimeout int    `json:"reconnect_timeout,omitempty"` // seconds a lost connection is retried; 0 = DefaultReconnectTimeout
	QueueTimeout     int    `json:"queue_timeout,omitempty"`     // launcher slurm: seconds a job may pend; 0 = DefaultQueueTimeout
	Streams          string `json:"streams,omitempty"`           // how streams reach the supervisor: "" / StreamsAuto, StreamsForward, StreamsSession
	// LinkTimeout is how long the SSH connection may stay silent before it
	// counts as lost, whatever the ssh config's ServerAliveInterval says;
	// 0 = DefaultLinkTimeout.
	LinkTimeout int `json:"link_timeout,omitempty"`
	// ConnectionNotices "off" keeps the connection's state out of the
	// notebook: no "connection lost" / "reconnected" lines under running
	// cells. "" or "on": shown.
	ConnectionNotices string `json:"connection_notices,omitempty"`
	// Master "off" makes gopyk-kernel dial a connection of its own instead
	// of sharing the host's gopyk master (package master); "" or "on":
	// shared, on Unix.
	Master string `json:"master,omitempty"`
	// MasterPersist is how many seconds the host's master stays once its
	// last user left, for the next launch; 0 = the host's ControlPersist
	// in the ssh config when set, else DefaultMasterPersist.
	MasterPersist int    `json:"master_persist,omitempty"`
	SSHClient     string `json:"ssh_client,omitempty"`    // "" / SSHClientNative, SSHClientOpenSSH, SSHClientAuto
	IOPubBacklog  int    `json:"iopub_backlog,omitempty"` // MiB of output held on the remote for a slow link; 0 = DefaultIOPubBacklog
}

// SSHClient values: gopyk's own SSH client (golang.org/x/crypto), the
// user's OpenSSH ssh run once per connection as a master (GSSAPI/Kerberos,
// PKCS#11, every ssh_config feature), or OpenSSH where the native client
// cannot log in. A live ControlMaster at the ControlPath is used by all.
const (
	SSHClientNative  = "native"
	SSHClientOpenSSH = "openssh"
	SSHClientAuto    = "auto"
)

// Streams values: SSH forwarding to the supervisor's unix socket, one exec
// session carrying every stream (for servers that refuse forwarding), or
// the forward with the session when the server refuses it.
const (
	StreamsAuto    = "auto"
	StreamsForward = "forward"
	StreamsSession = "session"
)

const (
	DefaultLaunchTimeout   = 60  // seconds
	DefaultShutdownTimeout = 10  // seconds
	DefaultQueueTimeout    = 600 // seconds a Slurm job may stay pending
	DefaultGrace           = 600 // seconds; the remote launcher's default
	// DefaultIOPubBacklog is how many MiB of output wait on the remote (in
	// memory, then in a file of the run dir) for a link slower than the
	// kernel, before the relay stops reading the kernel's output (which the
	// kernel may then drop; the log and the running cells say so); the
	// remote launcher's default.
	DefaultIOPubBacklog = 1024
	// DefaultReconnectTimeout is long enough for a laptop closed overnight.
	DefaultReconnectTimeout = 12 * 3600
	// DefaultLinkTimeout: a dead network path is noticed within this many
	// seconds, and a fresh connection is dialled.
	DefaultLinkTimeout = 15
	// DefaultMasterPersist: a host's master stays this many seconds after
	// its last kernel ended.
	DefaultMasterPersist = 600
)

// MetadataKey is the key under "metadata" that marks a spec as written by gopyk.
const MetadataKey = "gopyk"
