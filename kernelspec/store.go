package kernelspec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ErrNotFound is returned (wrapped) by Find when no directory holds the name.
var ErrNotFound = errors.New("kernel spec not found")

// Lookup returns the resource directory Jupyter would use for name: the first
// directory of Path() holding a kernel dir whose lower-cased name matches
// (jupyter_client's _find_spec_directory).
func Lookup(name string) (dir string, ok bool) {
	name = strings.ToLower(name)
	for _, kd := range Path() {
		entries, err := os.ReadDir(kd)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := pjoin(kd, e.Name())
			if strings.ToLower(e.Name()) == name && isKernelDir(p) {
				return p, true
			}
		}
	}
	return "", false
}

// NotFoundError names the spec that is missing and every directory searched.
type NotFoundError struct {
	Name string
	Dirs []string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no kernel spec %q in %s", e.Name, strings.Join(e.Dirs, ", "))
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// Find reads the spec Jupyter would use for name.
func Find(name string) (*Spec, error) {
	dir, ok := Lookup(name)
	if !ok {
		return nil, &NotFoundError{Name: strings.ToLower(name), Dirs: Path()}
	}
	return Load(strings.ToLower(name), dir)
}

// Load reads dir/kernel.json as the spec called name.
func Load(name, dir string) (*Spec, error) {
	file := pjoin(dir, FileName)
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read kernel spec %q: %w", name, err)
	}
	s, err := Parse(file, data)
	if err != nil {
		return nil, err
	}
	s.Name, s.Dir = name, dir
	return s, nil
}

// Dirs maps every visible spec name to its resource directory, as
// find_kernel_specs does: names lower-cased, the first directory wins.
func Dirs() map[string]string {
	found := map[string]string{}
	for _, kd := range Path() {
		entries, err := os.ReadDir(kd)
		if err != nil {
			continue
		}
		for _, e := range entries {
			p := pjoin(kd, e.Name())
			key := strings.ToLower(e.Name())
			if _, seen := found[key]; !seen && isKernelDir(p) {
				found[key] = p
			}
		}
	}
	return found
}

// SpecError is a spec All could not read.
type SpecError struct {
	Name, Dir string
	Err       error
}

func (e *SpecError) Error() string { return e.Err.Error() }
func (e *SpecError) Unwrap() error { return e.Err }

// All reads every visible spec, sorted by name. A spec that cannot be read
// yields an error of its own and does not hide the others.
func All() ([]*Spec, []error) {
	dirs := Dirs()
	names := make([]string, 0, len(dirs))
	for n := range dirs {
		names = append(names, n)
	}
	sort.Strings(names)
	var specs []*Spec
	var errs []error
	for _, n := range names {
		s, err := Load(n, dirs[n])
		if err != nil {
			errs = append(errs, &SpecError{Name: n, Dir: dirs[n], Err: err})
			continue
		}
		specs = append(specs, s)
	}
	return specs, errs
}

// Write stores the spec as dir/kernel.json, creating dir. The file is written
// to a temporary name in dir, synced and renamed, so a reader (or a crash)
// sees the old spec or the new one, never half of one. kernel.json is 0644,
// as Jupyter writes it: it holds no secrets.
func (s *Spec) Write(dir string) error {
	data, err := s.Marshal()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create kernel spec dir: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".kernel.json.*")
	if err != nil {
		return fmt.Errorf("write kernel spec: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, FileName))
	}
	if err != nil {
		return fmt.Errorf("write kernel spec in %s: %w", dir, err)
	}
	syncDir(dir)
	s.Dir = dir
	if s.Name == "" {
		s.Name = strings.ToLower(filepath.Base(dir))
	}
	return nil
}

// Remove deletes the spec's resource directory, or only the link when the
// directory is a symlink, like jupyter_client's remove_kernel_spec.
func (s *Spec) Remove() error {
	fi, err := os.Lstat(s.Dir)
	if err != nil {
		return fmt.Errorf("remove kernel spec %q: %w", s.Name, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		err = os.Remove(s.Dir)
	} else {
		err = os.RemoveAll(s.Dir)
	}
	if err != nil {
		return fmt.Errorf("remove kernel spec %q: %w", s.Name, err)
	}
	return nil
}

func isKernelDir(p string) bool {
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		return false
	}
	fi, err := os.Stat(pjoin(p, FileName))
	return err == nil && fi.Mode().IsRegular()
}

// syncDir makes the rename durable; failure only weakens durability, so it is ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
