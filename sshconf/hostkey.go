package sshconf

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyChecker verifies one hop's host key against known_hosts the way
// OpenSSH does, and remembers why it refused so Dial can explain it.
type hostKeyChecker struct {
	alias       string
	name        string // known_hosts lookup name in host:port form
	strict      string // yes, ask, accept-new, no
	hash        bool
	userFile    string // where accept-new records keys
	interactive bool
	prompt      *prompter

	db      *knownhosts.HostKeyDB // nil when no known_hosts file exists
	origin  map[string]string     // sanitised temp copy → original file
	cleanup func()

	mu     sync.Mutex
	kind   error // why the key was refused, for DialError
	err    error
	hint   string
	passed bool
}

// hostKeyLookupName is what OpenSSH looks up and records: HostKeyAlias
// verbatim, else [HostName]:port (plain HostName on port 22), in the
// host:port form x/crypto's knownhosts takes (it turns it back into the
// known_hosts spelling, so "[h]:p" must become h:p, not [[h]:p]:22).
func hostKeyLookupName(s *Settings) string {
	if a := s.HostKeyAlias; a != "" {
		if strings.HasPrefix(a, "[") {
			if h, p, err := net.SplitHostPort(a); err == nil && p != "" {
				return net.JoinHostPort(h, p)
			}
		}
		return net.JoinHostPort(a, "22")
	}
	return net.JoinHostPort(dialHostName(s), strconv.Itoa(dialPort(s)))
}

func dialExpandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

func hostKeyFiles(s *Settings) (user, global []string) {
	user, global = s.UserKnownHostsFiles, s.GlobalKnownHostsFiles
	if user == nil {
		user = []string{"~/.ssh/known_hosts", "~/.ssh/known_hosts2"}
	}
	if global == nil {
		global = []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}
	}
	clean := func(in []string) []string {
		var out []string
		for _, f := range in {
			if f != "" && f != "none" {
				out = append(out, dialExpandHome(f))
			}
		}
		return out
	}
	return clean(user), clean(global)
}

func newHostKeyChecker(s *Settings, interactive bool, p *prompter) (*hostKeyChecker, error) {
	user, global := hostKeyFiles(s)
	h := &hostKeyChecker{
		alias:       s.Alias,
		name:        hostKeyLookupName(s),
		strict:      strings.ToLower(s.StrictHostKeyChecking),
		hash:        s.HashKnownHosts,
		interactive: interactive,
		prompt:      p,
		cleanup:     func() {},
	}
	switch h.strict {
	case "", "ask":
		h.strict = "ask"
	case "no", "off", "false":
		h.strict = "no"
	case "accept-new":
	default:
		h.strict = "yes"
	}
	if len(user) > 0 {
		h.userFile = user[0]
	}
	files, origin, cleanup, err := sanitizeKnownHosts(append(slices.Clone(user), global...))
	if err != nil {
		return nil, err
	}
	h.origin, h.cleanup = origin, cleanup
	if len(files) > 0 {
		db, err := knownhosts.NewDB(files...)
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("read known_hosts: %w", err)
		}
		h.db = db
	}
	return h, nil
}

// sanitizeKnownHosts drops missing files and, for files with lines x/crypto
// can't parse (one bad line aborts a whole file there, OpenSSH skips it),
// makes a 0600 temp copy with those lines blanked so line numbers still match.
func sanitizeKnownHosts(files []string) (out []string, origin map[string]string, cleanup func(), err error) {
	origin = map[string]string{}
	var temps []string
	cleanup = func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f] {
			continue
		}
		seen[f] = true
		data, err := os.ReadFile(f)
		if err != nil {
			continue // missing or unreadable: OpenSSH ignores it too
		}
		lines := bytes.Split(data, []byte("\n"))
		bad := false
		for i, l := range lines {
			t := bytes.TrimSpace(l)
			if len(t) == 0 || t[0] == '#' {
				continue
			}
			if !knownHostsLineOK(t) {
				lines[i] = []byte("#")
				bad = true
			}
		}
		if !bad {
			out = append(out, f)
			origin[f] = f
			continue
		}
		tmp, err := os.CreateTemp("", "gopyk-known_hosts-")
		if err != nil {
			cleanup()
			return nil, nil, func() {}, fmt.Errorf("copy %s: %w", f, err)
		}
		temps = append(temps, tmp.Name())
		_, werr := tmp.Write(bytes.Join(lines, []byte("\n")))
		if cerr := tmp.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			cleanup()
			return nil, nil, func() {}, fmt.Errorf("copy %s: %w", f, werr)
		}
		out = append(out, tmp.Name())
		origin[tmp.Name()] = f
	}
	return out, origin, cleanup, nil
}

func knownHostsLineOK(line []byte) bool {
	_, hosts, _, _, _, err := ssh.ParseKnownHosts(line)
	if err != nil {
		return false
	}
	for _, h := range hosts {
		// x/crypto rejects hashed entries with bad base64 while parsing.
		if strings.HasPrefix(h, "|1|") {
			parts := strings.Split(h[3:], "|")
			if len(parts) != 2 {
				return false
			}
			for _, p := range parts {
				if _, err := base64.StdEncoding.DecodeString(p); err != nil {
					return false
				}
			}
		}
	}
	return true
}

// hostKeyAlgorithms orders what the config allows with the algorithms
// known_hosts holds for this host first (OpenSSH's order_hostkeyalgs), so
// the server doesn't pick a key type we have no record of.
func (h *hostKeyChecker) hostKeyAlgorithms(configured []string) []string {
	supported := ssh.SupportedAlgorithms().HostKeys
	base := defaultHostKeyAlgorithms
	if len(configured) > 0 {
		base = nil
		for _, a := range configured {
			if slices.Contains(supported, a) {
				base = append(base, a)
			}
		}
		if len(base) == 0 {
			base = defaultHostKeyAlgorithms
		}
	}
	if h.db == nil {
		return slices.Clone(base)
	}
	known := h.db.HostKeyAlgorithms(h.name)
	var out []string
	for _, a := range base {
		if slices.Contains(known, a) {
			out = append(out, a)
		}
	}
	for _, a := range base {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// defaultHostKeyAlgorithms is OpenSSH 9's preference (ed25519 first),
// limited to what x/crypto implements.
var defaultHostKeyAlgorithms = []string{
	ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoSKED25519v01, ssh.CertAlgoSKECDSA256v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

func (h *hostKeyChecker) close() { h.cleanup() }

func (h *hostKeyChecker) refuse(kind, err error, hint string) error {
	h.mu.Lock()
	h.kind, h.err, h.hint = kind, err, hint
	h.mu.Unlock()
	return err
}

// failure reports why the key was refused (nil kind when it was not).
func (h *hostKeyChecker) failure() (kind, err error, hint string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.kind, h.err, h.hint
}

func (h *hostKeyChecker) displayName() string {
	return xknownhosts.Normalize(h.name)
}

func (h *hostKeyChecker) check(_ string, remote net.Addr, key ssh.PublicKey) error {
	// x/crypto's knownhosts splits remote.String() before it looks at the
	// name; socketpair, WebSocket and channel conns have no host:port there.
	if _, ok := remote.(*net.TCPAddr); !ok {
		remote = &net.TCPAddr{IP: net.IPv4zero}
	}
	var err error = errUnknownHostKey
	if h.db != nil {
		err = h.db.HostKeyCallback()(h.name, remote, key)
	}
	if err == nil {
		h.mu.Lock()
		h.passed = true
		h.mu.Unlock()
		return nil
	}
	fp := keyDesc(key)
	var revoked *xknownhosts.RevokedError
	if errors.As(err, &revoked) {
		return h.refuse(ErrHostKeyRevoked,
			fmt.Errorf("host key %s of %s is marked @revoked in %s:%d", fp, h.displayName(), h.file(revoked.Revoked.Filename), revoked.Revoked.Line),
			"the server's key was revoked on purpose; ask its admin for the new key")
	}
	if knownhosts.IsHostKeyChanged(err) {
		return h.refuse(ErrHostKeyChanged, h.changedErr(err, fp), h.changedHint(err))
	}
	if _, isCert := key.(*ssh.Certificate); isCert && !knownhosts.IsHostUnknown(err) {
		return h.refuse(ErrHostKeyUnknown, fmt.Errorf("host certificate %s of %s not trusted: %v", fp, h.displayName(), err),
			"check the @cert-authority line for this host in known_hosts")
	}
	if !knownhosts.IsHostUnknown(err) && err != errUnknownHostKey {
		return h.refuse(nil, fmt.Errorf("check host key: %w", err), "")
	}
	switch h.strict {
	case "no", "accept-new":
		return h.accept(remote, key)
	case "ask":
		if h.interactive && h.prompt.confirm(fmt.Sprintf(
			"The authenticity of host '%s' can't be established.\n%s key fingerprint is %s.\nAre you sure you want to continue connecting (yes/no)? ",
			h.displayName(), keyTypeName(key), ssh.FingerprintSHA256(key))) {
			return h.accept(remote, key)
		}
	}
	return h.refuse(ErrHostKeyUnknown,
		fmt.Errorf("host key %s of %s is not in known_hosts (StrictHostKeyChecking %s)", fp, h.displayName(), h.strict),
		fmt.Sprintf("connect once with `ssh %s` to check and accept it, or set StrictHostKeyChecking accept-new", h.alias))
}

var errUnknownHostKey = &xknownhosts.KeyError{}

func (h *hostKeyChecker) file(name string) string {
	if o, ok := h.origin[name]; ok {
		name = o
	}
	return dialTilde(name)
}

func (h *hostKeyChecker) changedErr(err error, fp string) error {
	var ke *xknownhosts.KeyError
	errors.As(err, &ke)
	var where []string
	for _, w := range ke.Want {
		where = append(where, fmt.Sprintf("%s %s:%d", keyTypeName(w.Key), h.file(w.Filename), w.Line))
	}
	return fmt.Errorf("HOST KEY CHANGED for %s: the server offers %s, known_hosts has %s; possible man-in-the-middle attack, refusing to connect",
		h.displayName(), fp, strings.Join(where, ", "))
}

func (h *hostKeyChecker) changedHint(err error) string {
	var ke *xknownhosts.KeyError
	errors.As(err, &ke)
	file := h.userFile
	if len(ke.Want) > 0 {
		file = h.file(ke.Want[0].Filename)
	}
	return fmt.Sprintf("if the change is expected, remove the old key with `ssh-keygen -R '%s' -f %s` and connect again", h.displayName(), file)
}

// accept records a new host key in the first UserKnownHostsFile under an
// exclusive lock, since several gopyk-kernel processes can start at once.
func (h *hostKeyChecker) accept(remote net.Addr, key ssh.PublicKey) error {
	if h.userFile == "" {
		return nil
	}
	if err := appendKnownHost(h.userFile, h.name, key, h.hash); err != nil {
		return h.refuse(nil, fmt.Errorf("record host key of %s: %w", h.displayName(), err),
			fmt.Sprintf("check that %s is writable", dialTilde(h.userFile)))
	}
	h.mu.Lock()
	h.passed = true
	h.mu.Unlock()
	return nil
}

func appendKnownHost(file, name string, key ssh.PublicKey, hash bool) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	lock := flock.New(file+".lock", flock.SetPermissions(0o600))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ok, err := lock.TryLockContext(ctx, 20*time.Millisecond)
	if err != nil || !ok {
		return fmt.Errorf("lock %s.lock: %v", file, err)
	}
	defer lock.Unlock()
	// Another process may have recorded it while we waited for the lock.
	if cb, err := xknownhosts.New(file); err == nil {
		err := cb(name, &net.TCPAddr{IP: net.IPv4zero}, key)
		if err == nil {
			return nil
		}
		if knownhosts.IsHostKeyChanged(err) {
			return fmt.Errorf("another process recorded a different key meanwhile")
		}
	}
	host := xknownhosts.Normalize(name)
	if hash {
		host = xknownhosts.HashHostname(host)
	}
	line := host + " " + key.Type() + " " + base64.StdEncoding.EncodeToString(key.Marshal()) + "\n"
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if st, err := f.Stat(); err == nil && st.Size() > 0 && !endsWithNewline(file) {
		line = "\n" + line
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func endsWithNewline(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return true
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return true
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, st.Size()-1); err != nil {
		return true
	}
	return b[0] == '\n'
}

// keyDesc is "ED25519 SHA256:…" as ssh prints it.
func keyDesc(key ssh.PublicKey) string {
	return keyTypeName(key) + " " + ssh.FingerprintSHA256(key)
}

func keyTypeName(key ssh.PublicKey) string {
	t := key.Type()
	if c, ok := key.(*ssh.Certificate); ok {
		return keyTypeName(c.Key) + "-CERT"
	}
	switch {
	case strings.Contains(t, "ed25519"):
		if strings.HasPrefix(t, "sk-") {
			return "ED25519-SK"
		}
		return "ED25519"
	case strings.Contains(t, "ecdsa"):
		if strings.HasPrefix(t, "sk-") {
			return "ECDSA-SK"
		}
		return "ECDSA"
	case strings.Contains(t, "rsa"):
		return "RSA"
	case strings.Contains(t, "dss"):
		return "DSA"
	}
	return strings.ToUpper(t)
}
