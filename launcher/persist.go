package launcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/gopyk/gopyk/provisioner"
	"github.com/gopyk/gopyk/wire"
)

// persistFormat marks a gopyk persistence file, so that --existing can tell
// it from a connection file or an sshpyk file handed over by mistake.
const persistFormat = "gopyk-kernel/1"

// persisted is the persistence file: what --existing needs to re-attach.
// It holds the remote kernel's key, so it is written 0600.
type persisted struct {
	Format string `json:"format"`
	provisioner.State
	ConnectionFile string        `json:"connection_file"`  // the local connection file clients were given
	Local          wire.ConnInfo `json:"local_connection"` // its ports, reused on re-attach when free
}

func persistPath(runtimeDir, id string) string {
	return filepath.Join(runtimeDir, "gopyk-kernel-"+id+".json")
}

// savePersisted writes p to path atomically with mode 0600.
func savePersisted(path string, p persisted) (err error) {
	p.Format = persistFormat
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("encode persistence file %s: %w", path, err)
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// loadPersisted reads and checks a persistence file. Every error names the
// file and what to do about it.
func loadPersisted(path string) (persisted, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return persisted{}, fmt.Errorf("persistence file %s does not exist (it is removed when its kernel shuts down); pass the file printed after \"To re-attach:\"", path)
	}
	if err != nil {
		return persisted{}, fmt.Errorf("read persistence file: %w", err)
	}
	p, err := parsePersisted(b)
	if err != nil {
		return persisted{}, fmt.Errorf("persistence file %s %w", path, err)
	}
	return p, nil
}

// parsePersisted decodes a persistence file; its errors read on after
// "persistence file F ".
func parsePersisted(b []byte) (persisted, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		return persisted{}, fmt.Errorf("is corrupt (%v); delete it and launch a new kernel (a persistent kernel it described keeps running on the remote until shut down there)", err)
	}
	if _, ok := probe["format"]; !ok {
		switch {
		case probe["rem_conn_info"] != nil:
			return persisted{}, errors.New("is an sshpyk persistence file; gopyk cannot attach to kernels sshpyk started — use sshpyk-kernel --existing for it")
		case probe["shell_port"] != nil:
			return persisted{}, errors.New("is a Jupyter connection file, not a persistence file; pass the gopyk-kernel-*.json file printed after \"To re-attach:\"")
		}
		return persisted{}, errors.New("is not a gopyk persistence file (no \"format\" field); pass the gopyk-kernel-*.json file printed after \"To re-attach:\"")
	}
	var p persisted
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&p); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return persisted{}, fmt.Errorf("is corrupt: field %s should be a JSON %s, not %s; delete it and launch a new kernel", strings.TrimPrefix(te.Field, "State."), te.Type, te.Value)
		}
		return persisted{}, fmt.Errorf("is corrupt (%v); delete it and launch a new kernel", err)
	}
	if p.Format != persistFormat {
		return persisted{}, fmt.Errorf("has format %q, this gopyk-kernel reads %q; re-attach with the gopyk-kernel version that wrote it", p.Format, persistFormat)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"spec_name", p.SpecName},
		{"ssh_host_alias", p.Host},
		{"control_socket", p.Control},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return persisted{}, fmt.Errorf("is incomplete (no %s); delete it and launch a new kernel", strings.Join(missing, ", "))
	}
	return p, nil
}

// resolveExisting finds the persistence file --existing names, as sshpyk and
// jupyter's --existing do: a path; else a file name, glob or substring looked
// up in the current directory and the runtime dir, the most recently
// modified match winning. A bare substring only matches gopyk-kernel-*.json,
// so "--existing <id>" does not pick the kernel-<id>.json connection file.
func resolveExisting(arg, runtimeDir string) (string, error) {
	if arg == "" {
		return "", errors.New("--existing needs a persistence file name, path or glob")
	}
	if isRegular(arg) {
		return arg, nil
	}
	dirs := []string{"."}
	if runtimeDir != "" {
		dirs = append(dirs, runtimeDir)
	}
	isGlob := strings.ContainsAny(arg, "*?[")
	dir, base := filepath.Split(arg)
	if dir != "" {
		dirs = []string{dir}
	}
	var exact []string
	for _, d := range dirs {
		if p := filepath.Join(d, base); !isGlob && isRegular(p) {
			exact = append(exact, p)
		}
	}
	if len(exact) > 0 {
		return newest(exact), nil
	}
	var matches []string
	for _, d := range dirs {
		pat := filepath.Join(d, base)
		if !isGlob {
			pat = filepath.Join(d, "*"+base+"*")
		}
		ms, err := filepath.Glob(pat)
		if err != nil {
			return "", fmt.Errorf("--existing %q: bad glob: %w", arg, err)
		}
		for _, m := range ms {
			b := filepath.Base(m)
			// A substring must not pick kernel-<id>.json, the connection file
			// sharing the id; an exact name or an explicit glob is taken as is.
			if !isGlob && b != base && !(strings.HasPrefix(b, "gopyk-kernel-") && strings.HasSuffix(b, ".json")) {
				continue
			}
			if isRegular(m) {
				matches = append(matches, m)
			}
		}
	}
	if len(matches) == 0 {
		return "", fmt.Errorf("--existing %q: no persistence file matches in %s; pass the file printed after \"To re-attach:\"", arg, strings.Join(dirs, " or "))
	}
	return newest(matches), nil
}

func isRegular(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// newest returns the most recently modified of paths.
func newest(paths []string) string {
	best, bestT := "", int64(-1)
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		if t := st.ModTime().UnixNano(); t > bestT {
			best, bestT = p, t
		}
	}
	return best
}

// writeFileAtomic writes b to path with mode 0600 via a temp file and a
// rename: a reader sees the old file or the new one, never half of one.
func writeFileAtomic(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = f.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
