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
// of this machine's name and the route's destination, port, user and jump
// hosts (and ProxyCommand, which can lead the same name elsewhere). Two
// aliases for the same place share one master.
func Key(route sshconf.Route) string {
	local, _ := os.Hostname()
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", local)
	for _, s := range route {
		fmt.Fprintf(h, "%s\x00%d\x00%s\x00%s\x00", strings.ToLower(s.HostName), s.Port, s.User, s.ProxyCommand)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Dir is the user's private directory for gopyk's sockets:
// $XDG_RUNTIME_DIR/gopyk-<uid> (or under the temp dir when that is unset
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
	dir := filepath.Join(base, "gopyk-"+strconv.Itoa(os.Getuid()))
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
