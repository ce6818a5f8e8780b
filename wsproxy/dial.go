package wsproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// Dial opens the WebSocket o describes and returns it as a byte stream: each
// Write is one binary message, Reads return received messages in order.
// The returned conn's RemoteAddr is 0.0.0.0:0 (a real *net.TCPAddr) because
// known_hosts callbacks parse it and the WebSocket has no meaningful peer;
// host keys are checked by name (HostKeyAlias). Close performs the WebSocket
// close handshake and stops the pinger.
func Dial(ctx context.Context, o Options) (net.Conn, error) {
	o.defaults()
	what := "ws-proxy " + Redacted(o.URL)
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%s: not a URL; write it as wss://host/path", what)
	}
	switch u.Scheme {
	case "ws", "wss", "http", "https":
	default:
		return nil, fmt.Errorf("%s: scheme %q is not ws or wss; write it as wss://host/path", what, u.Scheme)
	}
	header, err := o.header()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	hc, err := o.httpClient()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	names := make([]string, 0, len(header))
	for k := range header {
		names = append(names, k)
	}
	o.Log.Debug("websocket dial", "url", Redacted(o.URL), "headers", names, "timeout", o.ConnectTimeout)

	dctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	t0 := time.Now()
	c, resp, err := websocket.Dial(dctx, o.URL, &websocket.DialOptions{
		HTTPClient:      hc,
		HTTPHeader:      header,
		CompressionMode: websocket.CompressionDisabled, // SSH traffic is encrypted: incompressible
	})
	if err != nil {
		if ctx.Err() != nil { // the caller gave up; not a timeout of ours
			return nil, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		return nil, o.explain(dctx, u, resp, err, hc, header)
	}
	o.Log.Debug("websocket open", "url", Redacted(o.URL), "status", resp.Status, "elapsed", time.Since(t0).Round(time.Millisecond))
	c.SetReadLimit(-1)

	return newConn(c, o), nil
}

// URLHasCredentials reports whether rawURL carries user info or a query
// parameter that looks like a credential (token, key, auth): on a command
// line those are visible to every local user.
func URLHasCredentials(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	if u.User != nil {
		return true
	}
	for k := range u.Query() {
		k = strings.ToLower(k)
		if strings.Contains(k, "token") || strings.Contains(k, "key") || strings.Contains(k, "auth") {
			return true
		}
	}
	return false
}

// httpClient clones http.DefaultTransport so HTTPS_PROXY/NO_PROXY and
// net/http's HTTP/1.1-only rule for upgrades keep working.
func (o *Options) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w; give a PEM file of CA certificates", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s holds no PEM certificate; give a PEM file of CA certificates", o.CACert)
		}
		cfg.RootCAs = pool
	}
	cfg.InsecureSkipVerify = o.Insecure
	tr.TLSClientConfig = cfg
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return quickAck(c), nil
	}
	return &http.Client{
		Transport: tr,
		// A redirect means "not running" or "log in first" on notebook
		// platforms; following it only hides that.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// explain turns a failed handshake into what happened and what to do.
func (o *Options) explain(ctx context.Context, u *url.URL, resp *http.Response, err error, hc *http.Client, header http.Header) *Error {
	e := &Error{URL: Redacted(o.URL), Err: err}
	e.Msg = o.explainText(ctx, u, resp, err, hc, header, e)
	return e
}

func (o *Options) explainText(ctx context.Context, u *url.URL, resp *http.Response, err error, hc *http.Client, header http.Header, e *Error) string {
	host := u.Host
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		st := resp.Status
		e.Status = resp.StatusCode
		switch code := resp.StatusCode; {
		case code >= 300 && code < 400:
			return o.explainRedirect(ctx, u, resp, hc, header, e)
		case code == 401 || code == 403:
			e.Kind = ErrAuthRejected
			return fmt.Sprintf("server answered %s%s: the token or cookie was rejected; %s", st, serverWords(resp.Body), o.credentialHint())
		case code == 404:
			e.Kind = ErrNoEndpoint
			return fmt.Sprintf("server answered %s: the server runs but has no such endpoint; check the URL, or jupyter-sshd-proxy is not installed on it", st)
		case code == 503 || code == 424:
			// The Hub's answer for a stopped server when asked for JSON.
			if words := serverWords(resp.Body); words != "" {
				e.Kind = ErrServerNotRunning
				return fmt.Sprintf("server answered %s%s: your server is not running; start it and retry", st, words)
			}
			return fmt.Sprintf("server answered %s: the server or the sshd behind it is unavailable; retry, or check the server's logs", st)
		case code == 405, code == 400, code == 426, code >= 200 && code < 300:
			e.Kind = ErrNoEndpoint
			return fmt.Sprintf("server answered %s: not a WebSocket endpoint; check the URL (the sshd WebSocket path, e.g. wss://HUB/user/NAME/sshd/)", st)
		case code >= 500:
			return fmt.Sprintf("server answered %s: the server or the sshd behind it failed; retry, or check the server's logs", st)
		default:
			return fmt.Sprintf("server answered %s instead of a WebSocket upgrade; check the URL", st)
		}
	}
	var (
		unknownCA   x509.UnknownAuthorityError
		hostnameErr x509.HostnameError
		invalidErr  x509.CertificateInvalidError
		verifyErr   *tls.CertificateVerificationError
		recordErr   tls.RecordHeaderError
		dnsErr      *net.DNSError
		opErr       *net.OpError
	)
	switch {
	case errors.As(err, &hostnameErr):
		return fmt.Sprintf("TLS: the certificate of %s is not valid for that name (%v); use the host name the certificate names, or --insecure to skip the check", host, hostnameErr)
	case errors.As(err, &unknownCA), errors.As(err, &invalidErr), errors.As(err, &verifyErr):
		return fmt.Sprintf("TLS: the certificate of %s is not trusted (%v); give the CA that signed it with --cacert FILE, or --insecure to skip the check", host, innermost(err))
	case errors.As(err, &recordErr), strings.Contains(err.Error(), "HTTP response to HTTPS client"):
		return fmt.Sprintf("TLS: %s does not speak TLS; use ws:// instead of wss://", host)
	case ctx.Err() != nil:
		return fmt.Sprintf("no WebSocket handshake with %s within %v; check the host and port and that the server answers, or raise --connect-timeout", host, o.ConnectTimeout)
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("cannot resolve %s (%v); check the host name", host, dnsErr)
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Sprintf("cannot connect to %s (%v); check the host and port and that the server runs", host, innermost(err))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &opErr),
		strings.Contains(err.Error(), "malformed HTTP"):
		if u.Scheme == "ws" || u.Scheme == "http" {
			return fmt.Sprintf("%s closed the connection without a WebSocket handshake (%v); if it only speaks TLS use wss://", host, innermost(err))
		}
		return fmt.Sprintf("%s closed the connection without a WebSocket handshake (%v); check the URL and the server's logs", host, innermost(err))
	}
	return fmt.Sprintf("WebSocket handshake with %s failed: %v; check the URL", host, err)
}

// innermost drops coder/websocket's and net/http's wrapping ("failed to
// send handshake request: Get …: …"), which repeats the URL.
func innermost(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
