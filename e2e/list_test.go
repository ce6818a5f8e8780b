//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
)

// gopyk list checks each spec end to end: a good one gets (v), and each kind
// of breakage gets its own (x) line with the fix; a silent host cannot make it
// hang.
func TestListRemoteChecks(t *testing.T) {
	e := newEnv(t)
	s := e.sshd

	// A peer that accepts and never speaks, and a port nobody listens on.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	otherKey := filepath.Join(e.home, "other_key")
	if out, err := e.cmd(context.Background(), "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", otherKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	wrongKH := filepath.Join(e.home, "wrong_known_hosts")
	other := testbed.SSHDForTest(t, testbed.Options{}) // a different host key
	os.WriteFile(wrongKH, []byte(fmt.Sprintf("[%s]:%d %s\n", s.Host, s.Port, other.HostKeyPub)), 0o600)

	var cfg string
	for _, b := range []struct{ alias, extra string }{
		{"good", ""},
		{"badkey", fmt.Sprintf("  IdentityFile %s\n", otherKey)},
		{"changed", fmt.Sprintf("  UserKnownHostsFile %s\n", wrongKH)},
		{"refused", fmt.Sprintf("  Port %d\n", closedPort)},
		{"silent", fmt.Sprintf("  Port %d\n", silent.Addr().(*net.TCPAddr).Port)},
	} {
		rest := strings.SplitN(s.ConfigBlock(), "\n", 2)[1]
		if b.alias == "badkey" { // only the key the server does not know
			rest = strings.Replace(rest, "  IdentityFile "+s.ClientKey+"\n", "", 1)
		}
		cfg += "Host " + b.alias + "\n" + b.extra + "  ConnectTimeout 3\n" + rest
	}
	cfgFile := filepath.Join(e.home, "list_config")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	add := func(name, alias string, extra ...string) {
		e.gopyk(append([]string{"add", "--kernel-name", name, "--ssh-host-alias", alias, "--ssh-config", cfgFile,
			"--remote-python", python}, extra...)...)
	}
	add("k_good", "good", "--remote-kernel-name", "python3")
	add("k_nospec", "good", "--remote-kernel-name", "nosuchkernel")
	add("k_badkey", "badkey")
	add("k_changed", "changed")
	add("k_refused", "refused")
	add("k_silent", "silent")
	e.gopyk("add", "--kernel-name", "k_nopython", "--ssh-host-alias", "good", "--ssh-config", cfgFile, "--remote-python", "/nonexistent/python3")
	// A venv without ipykernel whose own kernel spec runs ipykernel_launcher:
	// every other check passes, only the import fails.
	venv := remoteVenv(t, s)
	add("k_venv", "good", "--remote-python", venv+"/bin/python", "--remote-kernel-name", "gpkvenv")

	t0 := time.Now()
	out, code := e.gopykCode("list", "-r")
	took := time.Since(t0)
	if code != 1 {
		t.Errorf("gopyk list -r with (x) lines exited %d, want 1", code)
	}
	if !strings.Contains(out, "gopyk: error: 7 kernel spec(s) with an (x): k_badkey, k_changed, k_nopython, k_nospec, k_refused, k_silent, k_venv;") {
		t.Errorf("no verdict naming the failed specs:\n%s", out)
	}
	blocks := map[string]string{}
	for _, b := range strings.Split(out, "----- SSH Kernel -----") {
		if m := regexp.MustCompile(`(?m)^Name:\s+(\S+)`).FindStringSubmatch(b); m != nil {
			blocks[m[1]] = b
		}
	}
	expect := func(spec, re string) {
		t.Helper()
		if !regexp.MustCompile(`(?m)` + re).MatchString(blocks[spec]) {
			t.Errorf("%s: no line matching %q in:\n%s", spec, re, blocks[spec])
		}
	}
	expect("k_good", `^SSH Connection:\s+\(v\) `+s.User+`@127\.0\.0\.1:`)
	expect("k_good", `^Remote System:\s+\(i\) Linux `)
	expect("k_good", `^Remote Python:\s+\(v\) /usr/bin/python3 \(Python 3\.`)
	expect("k_good", `^Remote Kernel Name:\s+\(v\) python3 `)
	expect("k_good", `^Remote Kernel Module:\s+\(v\) /usr/bin/python3 imports ipykernel_launcher$`)
	expect("k_venv", `^Remote Kernel Name:\s+\(v\) gpkvenv `)
	expect("k_venv", `^Remote Kernel Module:\s+\(x\) `+regexp.QuoteMeta(venv)+`/bin/python cannot import ipykernel_launcher: ModuleNotFoundError: No module named 'ipykernel_launcher'; install ipykernel for that python`)
	if strings.Contains(blocks["k_good"], "(x)") {
		t.Errorf("k_good has an (x):\n%s", blocks["k_good"])
	}
	expect("k_nospec", `^Remote Kernel Name:\s+\(x\) .*nosuchkernel.*fix: gopyk edit --kernel-name k_nospec --remote-kernel-name NAME with one of: .*python3`)
	expect("k_nopython", `^Remote Python:\s+\(x\) .*/nonexistent/python3.*gopyk edit`)
	expect("k_badkey", `^SSH Connection:\s+\(x\) .*other_key`)
	expect("k_changed", `^SSH Connection:\s+\(x\) .*(changed|CHANGED).*wrong_known_hosts:1`)
	expect("k_refused", `^SSH Connection:\s+\(x\) .*refused`)
	expect("k_silent", `^SSH Connection:\s+\(x\) .*did not finish within 3s`)
	if took > 25*time.Second {
		t.Errorf("gopyk list took %v: the checks must run in parallel under a deadline", took)
	}

	// --json carries the same verdict; a good spec alone passes with 0.
	js, code := e.gopykCode("list", "-r", "--json")
	var rep struct {
		OK     bool
		Failed []string
	}
	if err := json.Unmarshal([]byte(js[:strings.LastIndex(js, "}")+1]), &rep); err != nil || code != 1 || rep.OK || len(rep.Failed) != 7 {
		t.Errorf("list --json: exit %d, ok %v, failed %v (%v), want 1, false and 7 specs", code, rep.OK, rep.Failed, err)
	}
	for _, k := range []string{"k_badkey", "k_changed", "k_nopython", "k_nospec", "k_refused", "k_silent", "k_venv"} {
		e.gopyk("delete", "--force", k)
	}
	if out, code := e.gopykCode("list", "-r"); code != 0 {
		t.Errorf("gopyk list with only good specs exited %d:\n%s", code, out)
	}
}

// remoteVenv makes, on the test sshd's side (as its user), a venv without
// pip or ipykernel holding a kernel spec "gpkvenv" that runs
// ipykernel_launcher with the venv's python, as `python -m ipykernel install
// --sys-prefix` would have written before ipykernel was uninstalled.
func remoteVenv(t *testing.T, s *testbed.SSHD) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := s.Exec(ctx, `set -e; v=$HOME/gpk-venv; /usr/bin/python3 -m venv --without-pip "$v"; d="$v/share/jupyter/kernels/gpkvenv"; mkdir -p "$d"
printf '{"argv": ["%s/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "venv", "language": "python"}' "$v" > "$d/kernel.json"; echo "$v"`)
	if err != nil {
		t.Fatalf("make a venv on the sshd side: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// A real launch from gopyk list: one cell, a shutdown, each step timed, and
// nothing left on the remote side; a spec whose launch cannot work is not
// launched and exits 1.
func TestListLaunch(t *testing.T) {
	e := newEnv(t)
	out, code := e.gopykCode("list", "--launch", e.spec)
	if code != 0 {
		t.Fatalf("gopyk list --launch %s exited %d:\n%s", e.spec, code, out)
	}
	for _, re := range []string{
		`(?m)^Launch Start:\s+\(v\) \d+\.\d{3} s: remote kernel started on \S+ `,
		`(?m)^Launch Ready:\s+\(v\) \d+\.\d{3} s: kernel answered kernel_info`,
		`(?m)^Launch Cell:\s+\(v\) \d+\.\d{3} s: ran one cell: \S+ \d+ /usr/bin/python3$`,
		`(?m)^Launch Shutdown:\s+\(v\) \d+\.\d{3} s: remote kernel shut down$`,
		`(?m)^Launch:\s+\(v\) launched, ran a cell and shut down in `,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no line matching %q in:\n%s", re, out)
		}
	}
	t.Logf("gopyk list --launch:\n%s", out)
	if strings.Count(out, "----- SSH Kernel -----") != 1 {
		t.Errorf("--launch lists other specs too:\n%s", out)
	}
	e.waitNoRemote(10 * time.Second)

	venv := remoteVenv(t, e.sshd)
	e.gopyk("add", "--kernel-name", "k_venv", "--ssh-host-alias", e.sshd.Alias, "--ssh-config", e.sshd.ConfigFile,
		"--remote-python", venv+"/bin/python", "--remote-kernel-name", "gpkvenv")
	out, code = e.gopykCode("list", "--launch", "k_venv")
	if code != 1 || !regexp.MustCompile(`(?m)^Launch:\s+\(\?\) not tried: fix the lines marked \(x\) first$`).MatchString(out) {
		t.Errorf("--launch of a spec with an (x): exit %d, want 1 and no launch:\n%s", code, out)
	}
	e.waitNoRemote(10 * time.Second)
}
