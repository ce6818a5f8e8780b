package testbed

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHDPath is Debian's OpenSSH server.
const SSHDPath = "/usr/sbin/sshd"

// DefaultAlias is the Host name the client config gives the test sshd.
const DefaultAlias = "gpk-test"

// Options shape one test sshd.
type Options struct {
	// Alias is the Host name in ConfigFile; "" means DefaultAlias.
	Alias string
	// Override lines come before the testbed's own sshd_config lines, so
	// they win: sshd keeps the first value of a keyword (e.g. "UsePAM yes").
	Override []string
	// ExtraConfig lines are appended to sshd_config (e.g. "TrustedUserCAKeys /x/ca.pub").
	ExtraConfig []string
	// HostCA, when set, is a CA private key file: the host key is certified
	// by it (principal 127.0.0.1) and sshd presents the certificate, for
	// @cert-authority tests.
	HostCA string
	// IsolateHome gives sessions their own empty HOME (<Dir>/home, owned by
	// the login user) instead of the user's real one, so parallel tests
	// don't share ~/.gopyk or ~/.local/share/jupyter. Home reports it.
	IsolateHome bool
	// Netns, when set, runs sshd inside Netns.Remote (ip netns exec) listening
	// on Netns.RemoteIP, for link-drop tests; clients must run in Netns.Local.
	Netns *Netns
	// Program runs sshd under another name (a symlink to SSHDPath): sshd
	// names its PAM service after its program, so PAMService gives each
	// test its own /etc/pam.d file. "" means SSHDPath.
	Program string
	// User overrides the login user. As root the default is $GOPYK_TEST_USER
	// or "gpktest"; as a normal user it is that user (sshd cannot switch users then).
	User string
	// Forwarding restricts what sshd forwards, as hardened login nodes and
	// bastions do: "" allows it all; NoStreamLocal or ForwardingDisabled.
	Forwarding string
	// FullHome (with IsolateHome) and FullTmp put a full 1 MiB tmpfs over the
	// sessions' home and over /tmp, in a mount namespace of sshd's own
	// (unshare): every session sees them, nothing else does, and they go
	// with sshd. Needs root.
	FullHome, FullTmp bool
	// Env is added to sshd's environment (KRB5_KTNAME, KRB5_CONFIG for a
	// test KDC).
	Env []string
}

// Options.Forwarding values.
const (
	NoStreamLocal      = "AllowStreamLocalForwarding no"
	ForwardingDisabled = "DisableForwarding yes"
)

// SSHD is a running OpenSSH sshd owned by the caller. Everything it uses
// lives in Dir, which Stop removes.
type SSHD struct {
	Host       string // "127.0.0.1"
	Port       int
	Addr       string // Host:Port
	Alias      string // Host name in ConfigFile
	User       string // login user
	Home       string // the login user's home directory
	Dir        string // 0755 directory holding config, keys and logs
	ClientKey  string // private key (OpenSSH format, unencrypted) authorised for User
	HostKeyPub string // authorized_keys-format host public key line
	HostKey    ssh.PublicKey
	KnownHosts string // known_hosts holding "[127.0.0.1]:port <hostkey>"
	ConfigFile string // ssh client config with a Host Alias block
	LogFile    string // sshd's log (LogLevel VERBOSE)

	// AuthorizedKeys is the AuthorizedKeysFile; tests may append keys to it.
	AuthorizedKeys string

	sshdConfig string
	tag        string // GOPYK_TESTBED=<dir>, set in every session by SetEnv
	program    string // sshd's path: SSHDPath or Options.Program
	homeEnv    string // " HOME=<dir>/home" with IsolateHome
	mounts     string // sh commands run in sshd's own mount namespace before it starts
	netns      *Netns
	forwarding string // Options.Forwarding
	env        []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	orphans []int // connection processes of a killed listener, for Stop
}

// StartSSHD starts sshd on a free loopback port and waits until it answers
// with an SSH banner.
func StartSSHD(ctx context.Context, opts Options) (*SSHD, error) {
	if _, err := os.Stat(SSHDPath); err != nil {
		return nil, fmt.Errorf("testbed: %s missing (install openssh-server; run make setup): %w", SSHDPath, err)
	}
	login, err := loginUser(opts.User)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if _, err := os.Stat("/run/sshd"); err != nil {
			return nil, errors.New("testbed: /run/sshd (sshd's privilege separation dir) is missing; run make setup")
		}
	}
	dir, err := os.MkdirTemp("", "gopyk-sshd-")
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	// The login user must traverse the dir to read AuthorizedKeysFile.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("testbed: %w", err)
	}
	alias := opts.Alias
	if alias == "" {
		alias = DefaultAlias
	}
	s := &SSHD{
		Host:           "127.0.0.1",
		Alias:          alias,
		User:           login.Username,
		Home:           login.HomeDir,
		Dir:            dir,
		ClientKey:      filepath.Join(dir, "client_key"),
		KnownHosts:     filepath.Join(dir, "known_hosts"),
		ConfigFile:     filepath.Join(dir, "ssh_config"),
		LogFile:        filepath.Join(dir, "sshd.log"),
		AuthorizedKeys: filepath.Join(dir, "authorized_keys"),
		sshdConfig:     filepath.Join(dir, "sshd_config"),
		tag:            "GOPYK_TESTBED=" + dir,
		netns:          opts.Netns,
		forwarding:     opts.Forwarding,
		env:            opts.Env,
		program:        opts.Program,
	}
	if s.program == "" {
		s.program = SSHDPath
	}
	if opts.Netns != nil {
		s.Host = opts.Netns.RemoteIP
	}
	if err := s.writeKeys(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	extra := opts.ExtraConfig
	if opts.IsolateHome {
		if err := s.makeHome(login); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if opts.FullHome || opts.FullTmp {
		if err := s.fullMounts(login, opts); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if opts.HostCA != "" {
		line, err := s.certifyHostKey(ctx, opts.HostCA)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		extra = append([]string{line}, extra...)
	}
	// A free port can be taken between probing and sshd's bind: retry.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		s.Port = port
		s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(port))
		if err := s.writeConfigs(opts.Override, extra); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if lastErr = s.start(ctx); lastErr == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

// SSHDForTest starts an sshd that t.Cleanup stops.
func SSHDForTest(t testing.TB, opts Options) *SSHD {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := StartSSHD(ctx, opts)
	if err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func loginUser(name string) (*user.User, error) {
	if name == "" && os.Geteuid() == 0 {
		name = os.Getenv("GOPYK_TEST_USER")
		if name == "" {
			name = "gpktest"
		}
	}
	if name == "" {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("testbed: current user: %w", err)
		}
		return u, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("testbed: test user %q does not exist; run make setup: %w", name, err)
	}
	return u, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testbed: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *SSHD) writeKeys() error {
	hostPub, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := writePrivateKey(filepath.Join(s.Dir, "ssh_host_ed25519_key"), hostPriv, "gopyk-testbed-host"); err != nil {
		return err
	}
	hk, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		return err
	}
	s.HostKey = hk
	s.HostKeyPub = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hk)))

	cliPub, cliPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := writePrivateKey(s.ClientKey, cliPriv, "gopyk-testbed-client"); err != nil {
		return err
	}
	ck, err := ssh.NewPublicKey(cliPub)
	if err != nil {
		return err
	}
	line := ssh.MarshalAuthorizedKey(ck)
	if err := os.WriteFile(s.ClientKey+".pub", line, 0o644); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	// Readable by the login user: sshd reads it with the user's uid.
	if err := os.WriteFile(s.AuthorizedKeys, line, 0o644); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	return os.Chmod(s.AuthorizedKeys, 0o644)
}

func (s *SSHD) makeHome(login *user.User) error {
	home := filepath.Join(s.Dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	if os.Geteuid() == 0 {
		uid, _ := strconv.Atoi(login.Uid)
		gid, _ := strconv.Atoi(login.Gid)
		if err := os.Chown(home, uid, gid); err != nil {
			return fmt.Errorf("testbed: %w", err)
		}
	}
	s.Home = home
	// sshd applies SetEnv after its own HOME, so this one wins.
	s.homeEnv = " HOME=" + home
	return nil
}

// fullMounts prepares Options.FullHome and FullTmp: the commands that mount
// and fill the tmpfs, run by sh in sshd's mount namespace. The /tmp one
// covers Dir too, so Dir (with the home mount in it) is bound back over it
// from the shell's working directory, which still reaches the old one
// (--no-canonicalize: mount would otherwise turn "." into the new path).
func (s *SSHD) fullMounts(login *user.User, opts Options) error {
	if os.Geteuid() != 0 {
		return errors.New("testbed: FullHome and FullTmp need root (mount)")
	}
	if opts.FullHome && s.Home != filepath.Join(s.Dir, "home") {
		return errors.New("testbed: FullHome needs IsolateHome")
	}
	fill := func(dir string) string {
		return fmt.Sprintf("{ dd if=/dev/zero of=%s/fill bs=64k >/dev/null 2>&1; true; }", dir)
	}
	var cmds []string
	if opts.FullHome {
		cmds = append(cmds,
			fmt.Sprintf("mount -t tmpfs -o size=1m,mode=0755,uid=%s,gid=%s gpk-full-home %s", login.Uid, login.Gid, s.Home),
			fill(s.Home))
	}
	if opts.FullTmp {
		cmds = append(cmds, "cd "+s.Dir, "mount -t tmpfs -o size=1m,mode=1777 gpk-full-tmp /tmp",
			"mkdir -p "+s.Dir, "mount --no-canonicalize --rbind . "+s.Dir, "cd /", fill("/tmp"))
	}
	s.mounts = strings.Join(cmds, " && ")
	return nil
}

// certifyHostKey signs the host key with ssh-keygen -s and returns the
// sshd_config line that presents the certificate.
func (s *SSHD) certifyHostKey(ctx context.Context, ca string) (string, error) {
	key := filepath.Join(s.Dir, "ssh_host_ed25519_key")
	if err := os.WriteFile(key+".pub", []byte(s.HostKeyPub+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("testbed: %w", err)
	}
	out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-s", ca, "-h", "-I", "gopyk-testbed-host", "-n", s.Host, key+".pub").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("testbed: certify host key with %s: %w: %s", ca, err, strings.TrimSpace(string(out)))
	}
	return "HostCertificate " + key + "-cert.pub", nil
}

// WritePrivateKey writes key in OpenSSH format, 0600, unencrypted.
func writePrivateKey(path string, key ed25519.PrivateKey, comment string) error {
	blk, err := ssh.MarshalPrivateKey(key, comment)
	if err != nil {
		return fmt.Errorf("testbed: marshal key: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	return nil
}

func (s *SSHD) writeConfigs(override, extra []string) error {
	cfg := []string{
		"Port " + strconv.Itoa(s.Port),
		"ListenAddress " + s.Host,
		"HostKey " + filepath.Join(s.Dir, "ssh_host_ed25519_key"),
		"PidFile none",
		"AuthorizedKeysFile " + s.AuthorizedKeys,
		"StrictModes no",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"PermitRootLogin no",
		"AllowUsers " + s.User,
		"AllowTcpForwarding yes",
		"AllowStreamLocalForwarding " + map[bool]string{true: "no", false: "yes"}[s.forwarding == NoStreamLocal],
		"DisableForwarding " + map[bool]string{true: "yes", false: "no"}[s.forwarding == ForwardingDisabled],
		"LogLevel VERBOSE",
		"SetEnv " + s.tag + s.homeEnv,
		"Subsystem sftp internal-sftp",
	}
	cfg = append(append(append([]string(nil), override...), cfg...), extra...)
	if err := os.WriteFile(s.sshdConfig, []byte(strings.Join(cfg, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	kh := fmt.Sprintf("[%s]:%d %s\n", s.Host, s.Port, s.HostKeyPub)
	if err := os.WriteFile(s.KnownHosts, []byte(kh), 0o644); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	return os.WriteFile(s.ConfigFile, []byte(s.ConfigBlock()), 0o644)
}

// ConfigBlock is the ssh_config "Host <Alias>" block that reaches this sshd
// with OpenSSH's own client, hermetically (no agent keys, no global files).
func (s *SSHD) ConfigBlock() string {
	return s.ConfigBlockAt(s.Alias, s.Port, s.KnownHosts)
}

// ConfigBlockAt is ConfigBlock for something in front of this sshd (a
// latency proxy, a flaky front) listening on port, named alias, whose host
// key is in knownHosts.
func (s *SSHD) ConfigBlockAt(alias string, port int, knownHosts string) string {
	return fmt.Sprintf(`Host %s
  HostName %s
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  HashKnownHosts no
  UpdateHostKeys no
  BatchMode yes
  ControlMaster no
  ControlPath none
`, alias, s.Host, port, s.User, s.ClientKey, knownHosts)
}

// ConfigVia writes a client config (in s.Dir) where s's alias is reached
// through jump with ProxyJump, and returns its path.
func (s *SSHD) ConfigVia(jump *SSHD) (string, error) {
	if jump.Alias == s.Alias {
		return "", fmt.Errorf("testbed: jump host and target share the alias %q; give one Options.Alias", s.Alias)
	}
	body := s.ConfigBlock() + "  ProxyJump " + jump.Alias + "\n\n" + jump.ConfigBlock()
	path := filepath.Join(s.Dir, "ssh_config_via_"+jump.Alias)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		return "", fmt.Errorf("testbed: %w", err)
	}
	return path, nil
}

// start runs sshd in the foreground (-D) on s.Port and waits for its banner.
func (s *SSHD) start(ctx context.Context) error {
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	cmd := s.command("-D", "-e", "-f", s.sshdConfig)
	if len(s.env) > 0 {
		cmd.Env = append(os.Environ(), s.env...)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = "/"
	// Own process group: a ^C to the test does not reach sshd before Stop does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("testbed: start sshd: %w", err)
	}
	logf.Close()
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	if err := waitBanner(ctx, s.Addr, s.dial, exited); err != nil {
		s.Kill()
		return fmt.Errorf("testbed: sshd on %s not ready: %w; log %s: %s", s.Addr, err, s.LogFile, s.logTail())
	}
	return nil
}

func waitBanner(ctx context.Context, addr string, dial dialFunc, exited <-chan struct{}) error {
	deadline := time.Now().Add(15 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-exited:
			return errors.New("sshd exited")
		default:
		}
		if last = readBanner(addr, dial, deadline); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no banner before deadline: %w", last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errors.New("sshd exited")
		case <-tick.C:
		}
	}
}

func readBanner(addr string, dial dialFunc, deadline time.Time) error {
	c, err := dial(addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	d := time.Now().Add(2 * time.Second)
	if deadline.Before(d) {
		d = deadline
	}
	c.SetDeadline(d)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("unexpected banner %q", line)
	}
	return nil
}

func (s *SSHD) logTail() string {
	b, _ := os.ReadFile(s.LogFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// PID is the listening sshd's process id (0 when not running).
func (s *SSHD) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	select {
	case <-s.exited:
		return 0
	default:
	}
	return s.cmd.Process.Pid
}

// Kill SIGKILLs the listening sshd only: established connections live on,
// config, keys and port stay for Restart.
func (s *SSHD) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	// Its connections outlive it; remember them so Stop can end them.
	if pid := s.PID(); pid != 0 {
		for _, p := range descendants(pid) {
			if s.isSSHD(p) {
				s.mu.Lock()
				s.orphans = append(s.orphans, p.pid)
				s.mu.Unlock()
			}
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
	}
}

// Restart starts sshd again on the same port with the same host key (after
// Kill, or to replace a running one).
func (s *SSHD) Restart(ctx context.Context) error {
	s.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.start(ctx)
		// The port can linger briefly after a kill; retry the bind.
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ConnPIDs lists the per-connection sshd processes (children of the
// listener and their privilege-separated children).
func (s *SSHD) ConnPIDs() []int {
	pid := s.PID()
	if pid == 0 {
		return nil
	}
	var out []int
	for _, p := range descendants(pid) {
		if s.isSSHD(p) && p.state != 'Z' {
			out = append(out, p.pid)
		}
	}
	return out
}

// Freeze SIGSTOPs every per-connection sshd: the peer goes silent as on a
// dead link, but TCP stays up. It returns how many processes it stopped.
func (s *SSHD) Freeze() int {
	pids := s.ConnPIDs()
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGSTOP)
	}
	return len(pids)
}

// KillConns SIGKILLs every per-connection sshd, as a server crash or a
// dropped link would end them; the listener keeps accepting (for reconnect
// tests). Call it before Kill: once the listener is gone they can't be found.
func (s *SSHD) KillConns() int {
	pids := s.ConnPIDs()
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
	return len(pids)
}

// Thaw SIGCONTs what Freeze stopped.
func (s *SSHD) Thaw() {
	for _, p := range s.ConnPIDs() {
		syscall.Kill(p, syscall.SIGCONT)
	}
}

// SessionPIDs lists every live process started by a session of this sshd,
// including daemonised ones that left the sshd process tree.
func (s *SSHD) SessionPIDs() []int {
	var out []int
	for _, p := range tagged(s.tag) {
		if alive(p) {
			out = append(out, p)
		}
	}
	return out
}

// Stop ends sshd (SIGTERM, then SIGKILL), every connection and session
// process it started, and removes Dir. Safe to call twice.
func (s *SSHD) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	var victims []int
	if pid := s.PID(); pid != 0 {
		for _, p := range descendants(pid) {
			victims = append(victims, p.pid)
		}
	}
	victims = append(victims, tagged(s.tag)...)
	s.mu.Lock()
	for _, p := range s.orphans {
		if pr, ok := readProc(p); ok && pr.comm == "sshd" {
			victims = append(victims, p)
		}
	}
	s.orphans = nil
	s.mu.Unlock()
	if cmd != nil {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
	}
	// Stopped processes must be continued to die of SIGTERM; SIGKILL needs no help.
	for _, p := range victims {
		syscall.Kill(p, syscall.SIGKILL)
	}
	// Catch sessions that forked between the listing and the kills.
	for _, p := range tagged(s.tag) {
		victims = append(victims, p)
		syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range victims {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // polling a condition, bounded by deadline
		}
	}
	if s.Dir != "" {
		os.RemoveAll(s.Dir)
	}
}

// Exec runs cmd on the test host with OpenSSH's own client (ssh -F
// ConfigFile Alias) and returns its stdout; stderr goes into the error.
func (s *SSHD) Exec(ctx context.Context, cmd string) ([]byte, error) {
	return s.ExecWith(ctx, s.ConfigFile, cmd)
}

// ExecWith is Exec with another client config (e.g. one from ConfigVia).
func (s *SSHD) ExecWith(ctx context.Context, configFile, cmd string) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	c := exec.CommandContext(ctx, "ssh", "-F", configFile, s.Alias, "--", cmd)
	var stderr strings.Builder
	c.Stderr = &stderr
	c.WaitDelay = 2 * time.Second
	out, err := c.Output()
	if err != nil {
		return out, fmt.Errorf("ssh %s %q: %w: %s", s.Alias, cmd, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
