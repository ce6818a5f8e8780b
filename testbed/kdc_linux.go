package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// KDC is a one-realm MIT Kerberos KDC (Debian's krb5-kdc) on a free
// loopback port, with everything in its own directory: nothing touches
// /etc/krb5.conf or /etc/krb5.keytab. Clients and sshd find it through the
// environment (Env, SSHDEnv).
type KDC struct {
	Realm  string
	Port   int
	Dir    string
	Config string // krb5.conf for clients and sshd (KRB5_CONFIG)
	Keytab string // the host principal's keytab, for sshd (KRB5_KTNAME)

	profile string // kdc.conf (KRB5_KDC_PROFILE)
	cmd     *exec.Cmd
	exited  chan struct{}
}

// KDCRealm is the test realm.
const KDCRealm = "GPK.TEST"

// StartKDC creates a realm, a host principal host/<host> with its keytab
// for sshd, and starts krb5kdc; t.Cleanup stops it (by pid) and removes
// everything.
func StartKDC(t testing.TB, host string) *KDC {
	t.Helper()
	for _, p := range []string{"/usr/sbin/krb5kdc", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local", "/usr/bin/kinit"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("testbed: %s missing (krb5-kdc, krb5-admin-server, krb5-user; run make setup)", p)
		}
	}
	dir, err := os.MkdirTemp("", "gpk-14-kdc-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // sshd reads the config; the keytab itself is 0600
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	k := &KDC{Realm: KDCRealm, Port: port, Dir: dir, Config: filepath.Join(dir, "krb5.conf"),
		Keytab: filepath.Join(dir, "sshd.keytab"), profile: filepath.Join(dir, "kdc.conf")}
	t.Cleanup(k.stop)
	if err := k.start(host); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *KDC) start(host string) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(k.Port))
	// TCP only (udp_preference_limit 1), names used as given (no DNS).
	conf := fmt.Sprintf(`[libdefaults]
  default_realm = %[1]s
  dns_lookup_kdc = false
  dns_lookup_realm = false
  rdns = false
  dns_canonicalize_hostname = false
  udp_preference_limit = 1
[realms]
  %[1]s = {
    kdc = %[2]s
  }
`, k.Realm, addr)
	profile := fmt.Sprintf(`[kdcdefaults]
  kdc_listen = %[2]s
  kdc_tcp_listen = %[2]s
[realms]
  %[1]s = {
    database_name = %[3]s/principal
    key_stash_file = %[3]s/stash
    acl_file = %[3]s/kadm5.acl
  }
[logging]
  kdc = FILE:%[3]s/kdc.log
`, k.Realm, addr, k.Dir)
	if err := os.WriteFile(k.Config, []byte(conf), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(k.profile, []byte(profile), 0o644); err != nil {
		return err
	}
	// The database's master key, on stdin (kdb5_util asks twice).
	b := make([]byte, 16)
	rand.Read(b)
	mkey := hex.EncodeToString(b)
	if err := k.run(mkey+"\n"+mkey+"\n", "kdb5_util", "create", "-s", "-r", k.Realm); err != nil {
		return err
	}
	if err := k.AddPrincipal("host/"+host, k.Keytab); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(k.Dir, "krb5kdc.out"))
	if err != nil {
		return err
	}
	defer logf.Close()
	k.cmd = exec.Command("/usr/sbin/krb5kdc", "-n")
	k.cmd.Env = k.env()
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := k.cmd.Start(); err != nil {
		return fmt.Errorf("testbed: start krb5kdc: %w", err)
	}
	k.exited = make(chan struct{})
	go func() { k.cmd.Wait(); close(k.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-k.exited:
			b, _ := os.ReadFile(filepath.Join(k.Dir, "krb5kdc.out"))
			return fmt.Errorf("testbed: krb5kdc exited: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("testbed: krb5kdc does not listen after 15 s")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded
	}
}

func (k *KDC) env() []string {
	return append(os.Environ(), "KRB5_CONFIG="+k.Config, "KRB5_KDC_PROFILE="+k.profile)
}

func (k *KDC) run(stdin string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.Env = k.env()
	c.Stdin = strings.NewReader(stdin)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("testbed: %s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// AddPrincipal creates principal (random key) and writes its key to keytab.
func (k *KDC) AddPrincipal(principal, keytab string) error {
	if err := k.run("", "kadmin.local", "-q", "addprinc -randkey "+principal); err != nil {
		return err
	}
	return k.run("", "kadmin.local", "-q", "ktadd -k "+keytab+" "+principal)
}

// SSHDEnv is what sshd needs to accept GSSAPI logins for the host principal.
func (k *KDC) SSHDEnv() []string {
	return []string{"KRB5_CONFIG=" + k.Config, "KRB5_KTNAME=FILE:" + k.Keytab}
}

// Kinit gets a ticket for user into a fresh credential cache (from a
// keytab made for it, as `kinit` with a password would) and returns the
// environment a client needs to use it: KRB5_CONFIG and KRB5CCNAME.
func (k *KDC) Kinit(t testing.TB, user string) []string {
	t.Helper()
	keytab := filepath.Join(k.Dir, user+".keytab")
	if _, err := os.Stat(keytab); err != nil {
		if err := k.AddPrincipal(user, keytab); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"KRB5_CONFIG=" + k.Config, "KRB5CCNAME=FILE:" + filepath.Join(k.Dir, user+".ccache")}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "kinit", "-k", "-t", keytab, user)
	c.Env = append(os.Environ(), env...)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("testbed: kinit %s: %v: %s", user, err, out)
	}
	return env
}

func (k *KDC) stop() {
	if k.cmd != nil && k.cmd.Process != nil {
		k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-k.exited:
		case <-time.After(5 * time.Second):
			k.cmd.Process.Kill()
			<-k.exited
		}
	}
	os.RemoveAll(k.Dir)
}
