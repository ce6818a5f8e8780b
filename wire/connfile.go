package wire

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// Channel names as Jupyter spells them.
const (
	Shell   = "shell"
	IOPub   = "iopub"
	Stdin   = "stdin"
	Control = "control"
	HB      = "hb"
)

// Channels lists the five channels in connection-file order.
var Channels = []string{Shell, IOPub, Stdin, Control, HB}

// SchemeHMACSHA256 is the only signature scheme gopyk speaks; it is what
// every Jupyter client writes by default.
const SchemeHMACSHA256 = "hmac-sha256"

// ReadConnInfo reads and validates a Jupyter connection file. Errors name the
// file and the field at fault.
func ReadConnInfo(path string) (ConnInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ConnInfo{}, fmt.Errorf("read connection file: %w", err)
	}
	ci, err := ParseConnInfo(b)
	if err != nil {
		return ConnInfo{}, fmt.Errorf("connection file %s: %w", path, err)
	}
	return ci, nil
}

// ParseConnInfo decodes and validates connection-file JSON, filling the
// defaults Jupyter assumes (transport tcp, scheme hmac-sha256).
func ParseConnInfo(b []byte) (ConnInfo, error) {
	var ci ConnInfo
	if err := json.Unmarshal(b, &ci); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return ConnInfo{}, fmt.Errorf("field %s: want a JSON %s, got %s", te.Field, te.Type, te.Value)
		}
		return ConnInfo{}, fmt.Errorf("not valid JSON: %w", err)
	}
	if ci.Transport == "" {
		ci.Transport = "tcp"
	}
	if ci.SignatureScheme == "" {
		ci.SignatureScheme = SchemeHMACSHA256
	}
	if err := ci.Validate(); err != nil {
		return ConnInfo{}, err
	}
	return ci, nil
}

// Validate reports the first problem that would stop a client from
// connecting with ci.
func (ci ConnInfo) Validate() error {
	switch ci.Transport {
	case "tcp", "ipc":
	default:
		return fmt.Errorf("unsupported transport %q (want tcp or ipc)", ci.Transport)
	}
	if ci.SignatureScheme != SchemeHMACSHA256 {
		return fmt.Errorf("unsupported signature_scheme %q (gopyk supports %s only)", ci.SignatureScheme, SchemeHMACSHA256)
	}
	if ci.IP == "" {
		if ci.Transport == "ipc" {
			return errors.New("transport ipc needs \"ip\" set to the socket path prefix")
		}
		return errors.New("missing \"ip\"")
	}
	if ci.Transport == "tcp" && net.ParseIP(ci.IP) == nil {
		return fmt.Errorf("ip %q is not an IP address", ci.IP)
	}
	seen := map[int]string{}
	for _, ch := range Channels {
		p := ci.Port(ch)
		if p <= 0 || p > 65535 {
			return fmt.Errorf("%s_port is missing or invalid (%d)", ch, p)
		}
		if other, dup := seen[p]; dup {
			return fmt.Errorf("%s_port and %s_port are both %d", other, ch, p)
		}
		seen[p] = ch
	}
	return nil
}

// Port returns the port (or ipc suffix) of a channel, 0 for an unknown name.
func (ci ConnInfo) Port(channel string) int {
	switch channel {
	case Shell:
		return ci.ShellPort
	case IOPub:
		return ci.IOPubPort
	case Stdin:
		return ci.StdinPort
	case Control:
		return ci.ControlPort
	case HB:
		return ci.HBPort
	}
	return 0
}

// Addr returns the ZeroMQ endpoint of a channel: tcp://ip:port, or for ipc
// Jupyter's convention ipc://<ip>-<port> (ip is a path prefix there).
func (ci ConnInfo) Addr(channel string) string {
	p := ci.Port(channel)
	if ci.Transport == "ipc" {
		return "ipc://" + ci.IP + "-" + strconv.Itoa(p)
	}
	return "tcp://" + net.JoinHostPort(ci.IP, strconv.Itoa(p))
}

// WriteConnInfo writes ci atomically with mode 0600: readers see the old
// file or the complete new one, never a torn write (Jupyter may read it at
// any time, and it holds the key).
func WriteConnInfo(path string, ci ConnInfo) (err error) {
	b, err := json.MarshalIndent(ci, "", "  ")
	if err != nil {
		return fmt.Errorf("encode connection file %s: %w", path, err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write connection file %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// CreateTemp already uses 0600; Chmod guards against an odd umask
	// interpretation on other systems.
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("write connection file %s: %w", path, err)
	}
	if _, err = f.Write(b); err != nil {
		return fmt.Errorf("write connection file %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write connection file %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write connection file %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write connection file %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes the rename durable; failure only weakens crash safety, so
// it is not reported (some filesystems refuse fsync on directories).
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// NewKey returns a fresh random HMAC key (256 bits, hex).
func NewKey() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// FreeTCPPorts returns n distinct ports on 127.0.0.1 that were free a moment
// ago. Holding all listeners until every port is picked keeps them distinct.
func FreeTCPPorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// SetPorts assigns ports to the five channels in connection-file order.
func (ci *ConnInfo) SetPorts(p []int) {
	if len(p) < 5 {
		return
	}
	ci.ShellPort, ci.IOPubPort, ci.StdinPort, ci.ControlPort, ci.HBPort = p[0], p[1], p[2], p[3], p[4]
}
