//go:build !windows

package master

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gopyk/gopyk/sshconf"
)

// Key names the connection a master holds, as OpenSSH's %C does: a hash
// of this machine's name and, for the target and each jump host, the
// destination, port and user; and also (unlike %C) what decides who logs
// in and which host keys are trusted: the ProxyCommand, the keys and
// certificates offered, the known_hosts files and how strictly they are
// checked. Two aliases for the same place with the same such settings
// share one master; a spec that offers another key, or trusts other host
// keys, gets a master of its own, so that it is checked as it is set up
// (gopyk list) and never rides on a login it would not make.
func Key(route sshconf.Route) string {
	local, _ := os.Hostname()
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", local)
	for _, s := range route {
		fmt.Fprintf(h, "%s\x00%d\x00%s\x00%s\x00", strings.ToLower(s.HostName), s.Port, s.User, s.ProxyCommand)
		fmt.Fprintf(h, "%q\x00%q\x00%v\x00%s\x00", s.IdentityFiles, s.CertificateFiles, s.IdentitiesOnly, s.IdentityAgent)
		fmt.Fprintf(h, "%q\x00%q\x00%s\x00%s\x00%v\x00", s.UserKnownHostsFiles, s.GlobalKnownHostsFiles, s.StrictHostKeyChecking, s.HostKeyAlias, s.HostKeyAlgorithms)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Dir is the user's private directory for gopyk's sockets:
// $XDG_RUNTIME_DIR/gopyk-ssh-<uid> (or under the temp dir when that is unset
// or too long for unix socket paths), mode 0700, the user's own. It is
// made when missing; one that others could use is refused.
func Dir() (string, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" || len(base) > 40 {
		base = os.TempDir()
	}
	if len(base) > 40 {
		base = "/tmp"
	}
	// Not gopyk-<uid>: the remote launcher's run dirs may go to
	// /tmp/gopyk-<uid>, on this very machine for a kernel on localhost.
	dir := filepath.Join(base, "gopyk-ssh-"+strconv.Itoa(os.Getuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("make gopyk's socket directory: %w", err)
	}
	if err := privateDir(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// SocketPath is where the master for route listens.
func SocketPath(route sshconf.Route) (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "m-"+Key(route)), nil
}
