package wsproxy

import (
	"reflect"
	"testing"
)

// A ProxyCommand as written in a Windows ssh config: backslashes are path
// separators, not escapes, and the program is gopyk.exe.
func TestParseCommandWindowsPaths(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		ok   bool
		want Options
	}{
		{`C:\Users\me\bin\gopyk.exe ws-proxy --token-file C:\Users\me\.hub-token wss://hub.example/user/me/sshd/`, true,
			Options{URL: "wss://hub.example/user/me/sshd/", TokenFile: `C:\Users\me\.hub-token`, PingInterval: DefaultPingInterval, ConnectTimeout: DefaultConnectTimeout}},
		{`"C:\Program Files\gopyk\GOPYK.EXE" ws-proxy --cacert "C:\Users\me\hub ca.pem" wss://h/x`, true,
			Options{URL: "wss://h/x", CACert: `C:\Users\me\hub ca.pem`, PingInterval: DefaultPingInterval, ConnectTimeout: DefaultConnectTimeout}},
		{`C:\tools\websocat.exe --binary wss://h/x`, false, Options{}},
	} {
		got, ok := ParseCommand(tc.cmd)
		if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseCommand(%q) = %+v, %v; want %+v, %v", tc.cmd, got, ok, tc.want, tc.ok)
		}
	}
}
