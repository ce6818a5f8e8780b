package sshconf

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBackend answers lookups from a table of per-host ssh -G views and
// records the calls, so route building is tested without any ssh.
type fakeBackend struct {
	hosts map[string]map[string]string // host → key → value
	calls []string
}

func (f *fakeBackend) name() string { return "fake" }

func (f *fakeBackend) lookup(_ context.Context, host, user string, port int, _ string) (map[string][]string, error) {
	f.calls = append(f.calls, Jump{User: user, Host: host, Port: port}.String())
	raw := map[string][]string{"hostname": {host}, "user": {"local"}, "port": {"22"}}
	for k, v := range f.hosts[host] {
		raw[k] = []string{v}
	}
	if user != "" {
		raw["user"] = []string{user}
	}
	if port > 0 {
		raw["port"] = []string{itoa(port)}
	}
	return raw, nil
}

func itoa(n int) string { return Jump{Port: n}.String()[1:] }

func testLocal() localEnv {
	return localEnv{home: "/home/me", user: "me", uid: "1000", hostname: "box.example",
		lookupEnv: func(string) (string, bool) { return "", false }}
}

func routeString(r Route) string {
	var parts []string
	for _, s := range r {
		p := s.User + "@" + s.HostName + ":" + itoa(s.Port)
		if s.ProxyJump != "" {
			p += "[via " + s.ProxyJump + "]"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

func TestResolveRouteOrder(t *testing.T) {
	fb := &fakeBackend{hosts: map[string]map[string]string{
		"t": {"hostname": "target", "proxyjump": "u@a:2200,ssh://b,[::1]:2222"},
		"a": {"proxyjump": "x"},
		"b": {"proxyjump": "never", "proxycommand": "nc never 1", "user": "bee"},
		"x": {"hostname": "xx"},
	}}
	r := &resolver{be: fb, local: testLocal()}
	route, err := r.resolve(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	got := routeString(route)
	want := "local@xx:22 u@a:2200[via x] bee@b:22[via u@a:2200] local@::1:2222[via u@a:2200,b] local@target:22[via u@a:2200,ssh://b,[::1]:2222]"
	if got != want {
		t.Fatalf("route\n got %s\nwant %s", got, want)
	}
	if route.Target().Alias != "t" || route[3].ProxyCommand != "" {
		t.Fatalf("target alias %q, hop b proxycommand %q", route.Target().Alias, route[3].ProxyCommand)
	}
	for _, c := range fb.calls {
		if c == "never" {
			t.Fatalf("b's own ProxyJump was followed although T's chain overrides it: %v", fb.calls)
		}
	}
}

func TestResolveJumpNone(t *testing.T) {
	fb := &fakeBackend{hosts: map[string]map[string]string{"t": {"proxyjump": "none"}}}
	route, err := (&resolver{be: fb, local: testLocal()}).resolve(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(route) != 1 || route[0].ProxyJump != "" {
		t.Fatalf("ProxyJump none: route %s", routeString(route))
	}
}

func TestResolveJumpLoops(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts map[string]map[string]string
		want  string
	}{
		{"self", map[string]map[string]string{"t": {"proxyjump": "t"}}, "t -> t"},
		{"two", map[string]map[string]string{"t": {"proxyjump": "a"}, "a": {"proxyjump": "b"}, "b": {"proxyjump": "a"}}, "t -> a -> b -> a"},
		{"in list", map[string]map[string]string{"t": {"proxyjump": "a,t"}}, "t -> t"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := (&resolver{be: &fakeBackend{hosts: tc.hosts}, local: testLocal()}).resolve(context.Background(), "t")
			if err == nil || !strings.Contains(err.Error(), "ProxyJump loop: "+tc.want) {
				t.Fatalf("err = %v, want the cycle %q", err, tc.want)
			}
		})
	}
}

func TestResolveJumpDepth(t *testing.T) {
	_, err := (&resolver{be: &deepBackend{}, local: testLocal()}).resolve(context.Background(), "t")
	if err == nil || !strings.Contains(err.Error(), "deeper than") {
		t.Fatalf("err = %v, want a depth error", err)
	}
}

// deepBackend gives every host a ProxyJump to a new host: an endless chain.
type deepBackend struct{ n int }

func (d *deepBackend) name() string { return "deep" }
func (d *deepBackend) lookup(_ context.Context, host, _ string, _ int, _ string) (map[string][]string, error) {
	d.n++
	return map[string][]string{"hostname": {host}, "proxyjump": {"h" + itoa(d.n)}}, nil
}

func TestResolveConfigFileMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := Resolve(context.Background(), "x", Options{ConfigFile: missing})
	want := "ssh config file " + missing + " not found; fix the path with gopyk edit --ssh-config or --unset ssh_config"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}

func TestResolveBackendChoice(t *testing.T) {
	t.Setenv("GOPYK_SSH_CONFIG_BACKEND", "builtin")
	be, err := chooseBackend(Options{}, testLocal())
	if err != nil || be.name() != "builtin" {
		t.Fatalf("env builtin: %v %v", be, err)
	}
	be, err = chooseBackend(Options{Backend: "openssh"}, testLocal())
	if err != nil || be.name() != "openssh" {
		t.Fatalf("opts openssh beats env: %v %v", be, err)
	}
	t.Setenv("GOPYK_SSH_CONFIG_BACKEND", "")
	be, err = chooseBackend(Options{}, testLocal())
	if err != nil || be.name() != "openssh" {
		t.Fatalf("auto with ssh on PATH: %v %v", be, err)
	}
	be, err = chooseBackend(Options{SSHPath: "/nonexistent/ssh"}, testLocal())
	if err != nil || be.name() != "builtin" {
		t.Fatalf("auto without ssh: %v %v", be, err)
	}
	if _, err = chooseBackend(Options{Backend: "paramiko"}, testLocal()); err == nil {
		t.Fatal("unknown backend accepted")
	}
}

func TestResolveOpenSSH(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	writeFile(t, cfg, `Host t
  HostName %h.example
  Port 2201
  ProxyJump a
  IdentityFile ~/.ssh/id_%r_%h_%p
  ConnectTimeout 7
  ServerAliveInterval 5
  StrictHostKeyChecking no
Host a
  User jumper
  ProxyCommand nc %h %p
`)
	route, err := Resolve(context.Background(), "t", Options{ConfigFile: cfg, Backend: "openssh"})
	if err != nil {
		t.Fatal(err)
	}
	if len(route) != 2 {
		t.Fatalf("route of %d hops, want 2", len(route))
	}
	a, tg := route[0], route[1]
	if a.User != "jumper" || a.ProxyCommand != "nc a 22" {
		t.Fatalf("hop a: user %q proxycommand %q", a.User, a.ProxyCommand)
	}
	l, _ := currentLocalEnv()
	if tg.HostName != "t.example" || tg.Port != 2201 || tg.ConnectTimeout.Seconds() != 7 ||
		tg.ServerAliveInterval.Seconds() != 5 || tg.StrictHostKeyChecking != "no" ||
		len(tg.IdentityFiles) != 1 || tg.IdentityFiles[0] != l.home+"/.ssh/id_"+l.user+"_t.example_2201" {
		t.Fatalf("target: %+v", *tg)
	}
}

func TestResolveOpenSSHError(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config")
	writeFile(t, cfg, "Host t\n  NoSuchOption 1\n")
	_, err := Resolve(context.Background(), "t", Options{ConfigFile: cfg, Backend: "openssh"})
	if err == nil || !strings.Contains(err.Error(), "Bad configuration option: nosuchoption") ||
		!strings.Contains(err.Error(), "fix the ssh config file "+cfg) {
		t.Fatalf("err = %v", err)
	}
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestResolveBuiltinPublic(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config")
	writeFile(t, cfg, "Host t\n  HostName t.example\n  ProxyJump j:2201\n  IdentityFile /keys/%h\n")
	route, err := Resolve(context.Background(), "t", Options{ConfigFile: cfg, Backend: "builtin"})
	if err != nil {
		t.Fatal(err)
	}
	if len(route) != 2 || route[0].HostName != "j" || route[0].Port != 2201 ||
		route[1].IdentityFiles[0] != "/keys/t.example" || route[1].ProxyJump != "j:2201" {
		t.Fatalf("route: %s", routeString(route))
	}
	if _, err := Resolve(context.Background(), "-oProxyCommand=x", Options{ConfigFile: cfg}); err == nil {
		t.Fatal("an alias that looks like an option was accepted")
	}
}

// "-F none" reads no file at all; both backends then give OpenSSH's defaults.
func TestResolveConfigNone(t *testing.T) {
	ctx := context.Background()
	want, err := Resolve(ctx, "Some.Host", Options{ConfigFile: "none", Backend: "openssh"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(ctx, "Some.Host", Options{ConfigFile: "none", Backend: "builtin"})
	if err != nil {
		t.Fatal(err)
	}
	if d := diffRoutes(want, got); d != "" {
		t.Fatalf("defaults differ:\n%s", d)
	}
	if s := got.Target(); s.HostName != "some.host" || s.Port != 22 || len(s.IdentityFiles) != 7 {
		t.Fatalf("defaults: %+v", *s)
	}
}
