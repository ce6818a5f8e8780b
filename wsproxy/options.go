package wsproxy

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Defaults for Options fields left zero.
const (
	DefaultConnectTimeout = 15 * time.Second
	DefaultPingInterval   = 30 * time.Second
)

// Options describe one WebSocket endpoint. They hold references to secrets
// (file names, a variable name), never the secrets, so they are safe to log.
type Options struct {
	URL string // ws:// or wss:// (http:// and https:// are accepted too)

	HeaderFile string // lines "Name: value"; blank lines and # comments skipped
	TokenFile  string // the token, sent as "Authorization: token …"
	TokenEnv   string // name of a variable holding the token
	CookieFile string // "name=value" lines, sent as one Cookie header

	CACert   string // PEM file of CAs to trust instead of the system ones
	Insecure bool   // skip TLS certificate verification

	// PingInterval is how often a WebSocket ping is sent so idle-killing
	// proxies keep the connection; a ping unanswered for as long again
	// ends the connection. Negative disables pings; 0 means DefaultPingInterval.
	PingInterval time.Duration
	// ConnectTimeout bounds TCP connect, proxy, TLS and the upgrade; 0 means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration

	Log    *slog.Logger        // nil: no logging
	Getenv func(string) string // nil: os.Getenv
}

func (o *Options) defaults() {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
}

// header reads the credentials the options name into request headers.
func (o *Options) header() (http.Header, error) {
	h := http.Header{}
	if o.HeaderFile != "" {
		b, err := readSecret(o.HeaderFile, "--header-file")
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			name, value, ok := strings.Cut(line, ":")
			name, value = strings.TrimSpace(name), strings.TrimSpace(value)
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				// The line may be a secret: name the line, do not quote it.
				return nil, fmt.Errorf("--header-file %s line %d is not \"Name: value\"; write one header per line", o.HeaderFile, n)
			}
			h.Add(name, value)
		}
	}
	token := ""
	switch {
	case o.TokenFile != "" && o.TokenEnv != "":
		return nil, fmt.Errorf("both --token-file and --token-env given; use one")
	case o.TokenFile != "":
		b, err := readSecret(o.TokenFile, "--token-file")
		if err != nil {
			return nil, err
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("--token-file %s is empty; put the API token in it", o.TokenFile)
		}
	case o.TokenEnv != "":
		if token = strings.TrimSpace(o.Getenv(o.TokenEnv)); token == "" {
			return nil, fmt.Errorf("--token-env %s: the variable is unset or empty; export the API token in it", o.TokenEnv)
		}
	}
	if token != "" {
		h.Set("Authorization", "token "+token)
	}
	if o.CookieFile != "" {
		b, err := readSecret(o.CookieFile, "--cookie-file")
		if err != nil {
			return nil, err
		}
		var parts []string
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "cookie") {
				line = strings.TrimSpace(v)
			}
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			parts = append(parts, line)
		}
		if len(parts) == 0 {
			return nil, fmt.Errorf("--cookie-file %s has no cookie; write name=value", o.CookieFile)
		}
		h.Add("Cookie", strings.Join(parts, "; "))
	}
	return h, nil
}

func readSecret(path, flag string) ([]byte, error) {
	if err := CheckSecretFile(path, flag); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; check the file name", flag, err)
	}
	return b, nil
}

// CheckSecretFile refuses a credential file that users other than its owner
// can read, as ssh refuses such a key file: the token in it is as good as a
// password. A missing file is left to the read, which names it.
func CheckSecretFile(path, flag string) error {
	if runtime.GOOS == "windows" { // no Unix mode bits to speak of
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s %s can be read by other users (mode %04o); restrict it with 'chmod 600 %s'", flag, path, perm, path)
	}
	return nil
}

// Files lists the credential files o names with the flag each is given by.
func (o *Options) Files() [][2]string {
	var out [][2]string
	for _, c := range [][2]string{{"--token-file", o.TokenFile}, {"--cookie-file", o.CookieFile}, {"--header-file", o.HeaderFile}} {
		if c[1] != "" {
			out = append(out, c)
		}
	}
	return out
}

// credentialHint says which credentials were sent, for a 401/403 message.
func (o *Options) credentialHint() string {
	var from []string
	for _, c := range []struct{ flag, v string }{
		{"--token-file", o.TokenFile}, {"--token-env", o.TokenEnv},
		{"--cookie-file", o.CookieFile}, {"--header-file", o.HeaderFile},
	} {
		if c.v != "" {
			from = append(from, c.flag+" "+c.v)
		}
	}
	if len(from) == 0 {
		return "no credentials were sent; give the API token with --token-file or --token-env, or a cookie with --cookie-file"
	}
	return "check the credentials from " + strings.Join(from, ", ")
}

// Redacted is u with its query values and user info hidden, for messages:
// URLs like ?token=… must not reach logs.
func Redacted(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	p.User = nil
	q := p.Query()
	p.RawQuery, p.ForceQuery = "", false
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, url.QueryEscape(k)+"=…")
	}
	sort.Strings(keys)
	s := p.String()
	if len(keys) > 0 {
		s += "?" + strings.Join(keys, "&")
	}
	return s
}
