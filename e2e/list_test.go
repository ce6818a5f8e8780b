package e2e

import (
	"context"
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

	t0 := time.Now()
	out := e.gopyk("list", "-r")
	took := time.Since(t0)
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
	expect("k_nospec", `^Remote Kernel Name:\s+\(x\) .*nosuchkernel.*fix: gopyk edit --kernel-name k_nospec --remote-kernel-name NAME with one of: .*python3`)
	expect("k_nopython", `^Remote Python:\s+\(x\) .*/nonexistent/python3.*gopyk edit`)
	expect("k_badkey", `^SSH Connection:\s+\(x\) .*other_key`)
	expect("k_changed", `^SSH Connection:\s+\(x\) .*(changed|CHANGED).*wrong_known_hosts:1`)
	expect("k_refused", `^SSH Connection:\s+\(x\) .*refused`)
	expect("k_silent", `^SSH Connection:\s+\(x\) .*did not finish within 3s`)
	if took > 25*time.Second {
		t.Errorf("gopyk list took %v: the checks must run in parallel under a deadline", took)
	}
}
