package sshconf

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestParseSSHG(t *testing.T) {
	out := "host Web\nuser bob\nhostname web.example\nport 2222\n" +
		"identityfile ~/.ssh/a\nidentityfile ~/.ssh/b\ncanonicalizePermittedcnames none\n" +
		"proxycommand nc %h %p\r\n\nrekeylimit 0 0\n"
	m, err := ParseSSHG([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"host": {"Web"}, "user": {"bob"}, "hostname": {"web.example"}, "port": {"2222"},
		"identityfile": {"~/.ssh/a", "~/.ssh/b"}, "canonicalizepermittedcnames": {"none"},
		"proxycommand": {"nc %h %p"}, "rekeylimit": {"0 0"},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %v\nwant %v", m, want)
	}
}

func TestParseSSHGErrors(t *testing.T) {
	for _, out := range []string{
		"",
		"user bob\nport 22\n", // no hostname
		"hostname h\n bad leading space\n",
		"hostname h\nkey=value\n",
	} {
		if m, err := ParseSSHG([]byte(out)); err == nil {
			t.Errorf("ParseSSHG(%q) = %v, want an error", out, m)
		}
	}
}

func FuzzParseSSHG(f *testing.F) {
	f.Add([]byte("host h\nhostname h\nport 22\nidentityfile ~/.ssh/id_rsa\nidentityfile ~/.ssh/id_ed25519\n"))
	f.Add([]byte("hostname x\r\nproxycommand ssh -W [%h]:%p gw\n\n"))
	f.Add([]byte("hostname\nuser \n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		m, err := ParseSSHG(out)
		if err != nil {
			return
		}
		if len(m["hostname"]) == 0 {
			t.Fatal("accepted output without hostname")
		}
		// Writing the map back as ssh -G lines gives the same map.
		var b strings.Builder
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if k == "" || strings.ToLower(k) != k {
				t.Fatalf("bad key %q", k)
			}
			for _, v := range m[k] {
				b.WriteString(k + " " + v + "\n")
			}
		}
		m2, err := ParseSSHG([]byte(b.String()))
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip of %q: %v, %v vs %v", out, err, m2, m)
		}
	})
}

// A config whose Match exec hangs must not hang Resolve: ssh -G is bounded.
func TestOpenSSHTimeout(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config")
	writeFile(t, cfg, "Match exec \"sleep 37.4242\"\n  Port 2\n")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Resolve(ctx, "x", Options{ConfigFile: cfg, Backend: "openssh"})
	if err == nil {
		t.Fatal("no error from a hanging ssh -G")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Resolve took %s after its context ended", d)
	}
	if !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("err = %v", err)
	}
	// The sleep that ssh started went with it (same process group).
	out, _ := exec.Command("pgrep", "-f", "sleep 37.4242").Output()
	if len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("Match exec child still running: pids %s", out)
	}
}

func TestOpenSSHMissingBinary(t *testing.T) {
	_, err := Resolve(context.Background(), "x", Options{Backend: "openssh", SSHPath: filepath.Join(t.TempDir(), "ssh")})
	if err == nil || !strings.Contains(err.Error(), "GOPYK_SSH_CONFIG_BACKEND=builtin") {
		t.Fatalf("err = %v", err)
	}
}

func TestFirstLine(t *testing.T) {
	s := "Pseudo-terminal will not be allocated because stdin is not a terminal.\r\n\nc: line 2: Bad configuration option: x\nmore\n"
	if got := firstLine(s); got != "c: line 2: Bad configuration option: x" {
		t.Fatalf("firstLine = %q", got)
	}
}

// An ssh without -G (dropbear, busybox) is not a config error: auto mode
// falls back to the built-in reader, openssh mode says what to do.
func TestOpenSSHNotOpenSSH(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "ssh")
	writeFile(t, fake, "#!/bin/sh\necho \"ssh: illegal option -- G\" >&2\nexit 1\n")
	if err := os.Chmod(fake, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config")
	writeFile(t, cfg, "Host x\n  Port 2345\n")
	route, err := Resolve(context.Background(), "x", Options{ConfigFile: cfg, SSHPath: fake})
	if err != nil || route.Target().Port != 2345 {
		t.Fatalf("auto with a non-OpenSSH ssh: %v", err)
	}
	_, err = Resolve(context.Background(), "x", Options{ConfigFile: cfg, SSHPath: fake, Backend: "openssh"})
	if err == nil || !strings.Contains(err.Error(), "illegal option") || !strings.Contains(err.Error(), "GOPYK_SSH_CONFIG_BACKEND=builtin") {
		t.Fatalf("openssh with a non-OpenSSH ssh: %v", err)
	}
}
