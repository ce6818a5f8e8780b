package launcher

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gopyk/gopyk/wire"
)

// connFile is the local connection file clients read.
type connFile struct {
	path  string
	owned bool // gopyk-kernel wrote it, so it removes it on exit; Jupyter's own file is Jupyter's to remove
	info  wire.ConnInfo
}

// openConnFile returns the connection file to serve on. A file Jupyter wrote
// (it exists) gives the ports and the key; a named file that does not exist
// yet, or no name at all (then kernel-<id>.json in the runtime dir), gets free
// ports and a new key. write=false leaves the writing to the caller (attach
// learns the key only after attaching).
func openConnFile(path, runtimeDir, id, specName string, write bool) (connFile, error) {
	if path != "" {
		ci, err := wire.ReadConnInfo(path)
		switch {
		case err == nil:
			if ci.Transport != "tcp" {
				return connFile{}, fmt.Errorf("connection file %s: transport %q: gopyk-kernel serves clients on local TCP ports; set \"transport\": \"tcp\"", path, ci.Transport)
			}
			return connFile{path: path, info: ci}, nil
		case !errors.Is(err, fs.ErrNotExist):
			return connFile{}, fmt.Errorf("%w; fix it, or delete it and gopyk-kernel writes a new one", err)
		}
	} else {
		path = filepath.Join(runtimeDir, "kernel-"+id+".json")
	}
	ci, err := newConnInfo(specName)
	if err != nil {
		return connFile{}, err
	}
	cf := connFile{path: path, owned: true, info: ci}
	if write {
		if err := cf.write(); err != nil {
			return connFile{}, err
		}
	}
	return cf, nil
}

// write stores cf.info atomically (0600: it holds the key), creating the
// directory 0700 as Jupyter does for its runtime dir.
func (cf *connFile) write() error {
	if err := os.MkdirAll(filepath.Dir(cf.path), 0o700); err != nil {
		return fmt.Errorf("create the directory for connection file %s: %w", cf.path, err)
	}
	return wire.WriteConnInfo(cf.path, cf.info)
}

// remove deletes the file if gopyk-kernel made it.
func (cf *connFile) remove() {
	if cf.owned && cf.path != "" {
		_ = os.Remove(cf.path)
	}
}

func newConnInfo(specName string) (wire.ConnInfo, error) {
	ports, err := wire.FreeTCPPorts(5)
	if err != nil {
		return wire.ConnInfo{}, err
	}
	ci := wire.ConnInfo{
		IP:              "127.0.0.1",
		Key:             wire.NewKey(),
		Transport:       "tcp",
		SignatureScheme: wire.SchemeHMACSHA256,
		KernelName:      specName,
	}
	ci.SetPorts(ports)
	return ci, nil
}

// portsFree reports whether every port of ci can be bound on its IP now.
func portsFree(ci wire.ConnInfo) bool {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, ch := range wire.Channels {
		p := ci.Port(ch)
		if p <= 0 {
			return false
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(ci.IP, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		lns = append(lns, ln)
	}
	return true
}

// idFromConnFile reuses Jupyter's kernel id (kernel-<id>.json), so that a
// launcher Jupyter restarts with the same connection file keeps the same
// persistence file name.
func idFromConnFile(path string) string {
	b := filepath.Base(path)
	if id, ok := strings.CutPrefix(b, "kernel-"); ok {
		if id, ok = strings.CutSuffix(id, ".json"); ok && id != "" {
			return id
		}
	}
	return ""
}

// newID returns a random UUID v4, the shape of Jupyter's kernel ids.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
