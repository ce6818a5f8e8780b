package wsproxy

import (
	"context"
	"io"
	"os"
	"reflect"
	"testing"
	"time"
)

func TestParseCommand(t *testing.T) {
	home, _ := os.UserHomeDir()
	for _, tc := range []struct {
		cmd  string
		ok   bool
		want Options
	}{
		{"/usr/local/bin/gopyk ws-proxy --token-file ~/.hub-token wss://hub.example/user/a/sshd/", true,
			Options{URL: "wss://hub.example/user/a/sshd/", TokenFile: home + "/.hub-token", PingInterval: DefaultPingInterval, ConnectTimeout: DefaultConnectTimeout}},
		{`exec gopyk -vv ws-proxy --cookie-file='/p a/c' --cacert "/etc/ca.pem" --insecure --ping-interval 0 --connect-timeout=3s wss://h/x`, true,
			Options{URL: "wss://h/x", CookieFile: "/p a/c", CACert: "/etc/ca.pem", Insecure: true, PingInterval: -1, ConnectTimeout: 3 * time.Second}},
		{"gopyk ws-proxy -vvv wss://h/x --verbose --token-env HUB_TOKEN", true,
			Options{URL: "wss://h/x", TokenEnv: "HUB_TOKEN", PingInterval: DefaultPingInterval, ConnectTimeout: DefaultConnectTimeout}},
		{"gopyk ws-proxy --token-file $HOME/t wss://h/x", false, Options{}},
		{"gopyk ws-proxy wss://h/x?token=a", false, Options{}},
		{"gopyk ws-proxy wss://h/x | tee log", false, Options{}},
		{"gopyk ws-proxy --bogus wss://h/x", false, Options{}},
		{"gopyk ws-proxy", false, Options{}},
		{"gopyk ws-proxy a b", false, Options{}},
		{"gopyk list", false, Options{}},
		{"websocat --binary wss://h/x", false, Options{}},
		{"ssh -W %h:%p jump", false, Options{}},
		{`gopyk ws-proxy "wss://h/x`, false, Options{}},
	} {
		got, ok := ParseCommand(tc.cmd)
		if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseCommand(%q) = %+v, %v; want %+v, %v", tc.cmd, got, ok, tc.want, tc.ok)
		}
	}
}

// A parsed ProxyCommand dials in-process to the same stream the process
// would give.
func TestParseCommandDial(t *testing.T) {
	ca := newTestCA(t)
	s := newServer(t, ca)
	tok := writeFile(t, "tok", "abc\n")
	o, ok := ParseCommand("gopyk ws-proxy --token-file " + tok + " --cacert " + ca.pemFile + " " + s.wsURL())
	if !ok {
		t.Fatal("not recognised")
	}
	c, err := Dial(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("SSH-2.0-x\r\n")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 11)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "SSH-2.0-x\r\n" {
		t.Fatalf("echo %q %v", b, err)
	}
	c.SetDeadline(time.Time{})
	if got := s.lastHeader(t).Get("Authorization"); got != "token abc" {
		t.Fatalf("Authorization %q", got)
	}
}
