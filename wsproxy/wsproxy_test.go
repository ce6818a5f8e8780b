package wsproxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testCA is a throwaway CA and a server certificate for 127.0.0.1/localhost.
type testCA struct {
	pemFile string // the CA certificate, for --cacert
	server  tls.Certificate
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gopyk test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &testCA{pemFile: f, server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

// server is a WebSocket endpoint that echoes binary messages back and
// records the request headers it saw.
type server struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
	closes  chan websocket.StatusCode
	stop    chan struct{}             // closed at cleanup
	check   func(r *http.Request) int // non-zero: answer that status instead
	noRead  bool                      // accept, then never read (so pings go unanswered)
}

func newServer(t *testing.T, tlsCA *testCA) *server {
	s := &server{closes: make(chan websocket.StatusCode, 10), stop: make(chan struct{})}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.headers = append(s.headers, r.Header.Clone())
		s.mu.Unlock()
		if s.check != nil {
			if code := s.check(r); code != 0 {
				if code >= 300 && code < 400 {
					w.Header().Set("Location", "/hub/login?next=%2Fuser%2Fx%2Fsshd%2F")
				}
				http.Error(w, http.StatusText(code), code)
				return
			}
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.SetReadLimit(-1)
		ctx := r.Context()
		if s.noRead {
			<-s.stop
			c.CloseNow()
			return
		}
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				s.closes <- websocket.CloseStatus(err)
				return
			}
			if typ != websocket.MessageBinary {
				c.Close(websocket.StatusUnsupportedData, "binary only")
				return
			}
			if err := c.Write(ctx, websocket.MessageBinary, b); err != nil {
				return
			}
		}
	})
	if tlsCA != nil {
		s.Server = httptest.NewUnstartedServer(h)
		s.TLS = &tls.Config{Certificates: []tls.Certificate{tlsCA.server}}
		s.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
		s.StartTLS()
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(s.stop) })
	return s
}

func (s *server) wsURL() string {
	return strings.Replace(strings.Replace(s.URL, "https://", "wss://", 1), "http://", "ws://", 1) + "/user/u/sshd/"
}

func (s *server) lastHeader(t *testing.T) http.Header {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.headers) == 0 {
		t.Fatal("server saw no request")
	}
	return s.headers[len(s.headers)-1]
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runBridge runs Run on pipes and returns the test's ends plus Run's result.
func runBridge(t *testing.T, o Options) (stdin *io.PipeWriter, stdout *io.PipeReader, result chan error) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	result = make(chan error, 1)
	go func() {
		err := Run(context.Background(), o, inR, outW)
		outW.CloseWithError(io.EOF)
		inR.Close()
		result <- err
	}()
	t.Cleanup(func() { inW.Close(); outR.Close() })
	return inW, outR, result
}

func wait(t *testing.T, ch chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatalf("Run did not return within %v", d)
		return nil
	}
}

func TestBridgeEchoTLSAndCleanClose(t *testing.T) {
	ca := newTestCA(t)
	s := newServer(t, ca)
	tok := writeFile(t, "token", "s3cret-tok\n")
	in, out, res := runBridge(t, Options{URL: s.wsURL(), TokenFile: tok, CACert: ca.pemFile})

	// Several writes of different sizes, larger than one read buffer, come
	// back as one byte stream.
	var want []byte
	go func() {
		for i, n := range []int{1, 100, 70000, 5} {
			b := []byte(strings.Repeat(string(rune('a'+i)), n))
			in.Write(b)
		}
	}()
	for i, n := range []int{1, 100, 70000, 5} {
		want = append(want, []byte(strings.Repeat(string(rune('a'+i)), n))...)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(out, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(got) != string(want) {
		t.Fatal("echoed stream differs from what was sent")
	}
	if h := s.lastHeader(t); h.Get("Authorization") != "token s3cret-tok" || h.Get("Origin") != "" {
		t.Fatalf("headers: Authorization %q Origin %q; want the token and no Origin", h.Get("Authorization"), h.Get("Origin"))
	}
	in.Close() // ssh is done
	if err := wait(t, res, 10*time.Second); err != nil {
		t.Fatalf("Run after stdin EOF: %v, want nil", err)
	}
	select {
	case code := <-s.closes:
		if code != websocket.StatusNormalClosure {
			t.Fatalf("server saw close status %v, want normal closure", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server saw no close")
	}
}

func TestCredentials(t *testing.T) {
	s := newServer(t, nil)
	hf := writeFile(t, "headers", "# platform headers\nX-Api-Key: k1\n\nAuthorization: bearer b2\n")
	cf := writeFile(t, "cookies", "matlantis-notebook-pre-shared-key=psk\nCookie: other=1\n")
	for _, tc := range []struct {
		name string
		o    Options
		want map[string]string
	}{
		{"header file", Options{HeaderFile: hf}, map[string]string{"X-Api-Key": "k1", "Authorization": "bearer b2"}},
		{"token env", Options{TokenEnv: "GPK_TOK", Getenv: func(k string) string { return map[string]string{"GPK_TOK": " e1 "}[k] }},
			map[string]string{"Authorization": "token e1"}},
		{"cookie file", Options{CookieFile: cf}, map[string]string{"Cookie": "matlantis-notebook-pre-shared-key=psk; other=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.URL = s.wsURL()
			c, err := Dial(context.Background(), tc.o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			h := s.lastHeader(t)
			for k, v := range tc.want {
				if h.Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
				}
			}
			if a, ok := c.RemoteAddr().(*net.TCPAddr); !ok {
				t.Errorf("RemoteAddr %T, want *net.TCPAddr (known_hosts callbacks parse it)", c.RemoteAddr())
			} else if _, _, err := net.SplitHostPort(a.String()); err != nil {
				t.Errorf("RemoteAddr %q does not parse: %v", a, err)
			}
		})
	}
}

func TestCredentialErrors(t *testing.T) {
	bad := writeFile(t, "headers", "Authorization token-without-colon-sekrit\n")
	empty := writeFile(t, "empty", "\n")
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{HeaderFile: bad}, "line 1 is not \"Name: value\""},
		{Options{TokenFile: empty}, "is empty"},
		{Options{TokenFile: "/nonexistent/tok"}, "--token-file: open /nonexistent/tok"},
		{Options{TokenEnv: "GPK_UNSET_VAR_X"}, "GPK_UNSET_VAR_X: the variable is unset"},
		{Options{TokenEnv: "A", TokenFile: empty}, "use one"},
		{Options{CookieFile: empty}, "has no cookie"},
		{Options{CACert: empty}, "holds no PEM certificate"},
	} {
		tc.o.URL = "wss://127.0.0.1:1/"
		_, err := Dial(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want it to contain %q", tc.o, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "sekrit") {
			t.Errorf("error quotes the secret: %v", err)
		}
	}
}

// Each failure a user meets names the cause and the fix, within the connect timeout.
func TestHandshakeErrors(t *testing.T) {
	ca := newTestCA(t)
	tlsSrv := newServer(t, ca)
	plain := newServer(t, nil)
	status := newServer(t, nil)
	status.check = func(r *http.Request) int {
		switch {
		case strings.HasPrefix(r.URL.Path, "/s/"):
			var code int
			for _, c := range []int{302, 401, 403, 404, 405, 200, 502} {
				if r.URL.Path == "/s/"+http.StatusText(c) {
					code = c
				}
			}
			return code
		}
		return 0
	}
	// A TCP server that accepts and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var cmu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			cmu.Lock()
			conns = append(conns, c)
			cmu.Unlock()
		}
	}()
	t.Cleanup(func() {
		silent.Close()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
	})
	// A closed port.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()

	st := func(code int) string {
		return strings.Replace(status.URL, "http://", "ws://", 1) + "/s/" + http.StatusText(code) + "?token=sekrit"
	}
	for _, tc := range []struct {
		name, url string
		o         Options
		want      []string
	}{
		{"302 to login", st(302), Options{}, []string{"302 Found", "/hub/login", "not accepted", "no credentials were sent"}},
		{"401 no creds", st(401), Options{}, []string{"401", "rejected", "no credentials were sent", "--token-file"}},
		{"403", st(403), Options{TokenEnv: "T", Getenv: func(string) string { return "x" }}, []string{"403", "token or cookie was rejected", "--token-env T"}},
		{"404", st(404), Options{}, []string{"404", "no such endpoint", "jupyter-sshd-proxy"}},
		{"405", st(405), Options{}, []string{"405", "not a WebSocket endpoint"}},
		{"200", st(200), Options{}, []string{"200 OK", "not a WebSocket endpoint"}},
		{"502", st(502), Options{}, []string{"502", "failed"}},
		{"untrusted CA", tlsSrv.wsURL(), Options{}, []string{"TLS", tlsSrv.Listener.Addr().String(), "not trusted", "--cacert"}},
		{"wss to plain", strings.Replace(plain.wsURL(), "ws://", "wss://", 1), Options{}, []string{"does not speak TLS", "ws://"}},
		{"ws to TLS", strings.Replace(tlsSrv.wsURL(), "wss://", "ws://", 1), Options{}, []string{"not a WebSocket endpoint"}},
		{"silent", "ws://" + silent.Addr().String() + "/", Options{ConnectTimeout: 500 * time.Millisecond}, []string{"within 500ms", "--connect-timeout"}},
		{"refused", "ws://" + closed + "/", Options{}, []string{"cannot connect to " + closed, "refused"}},
		{"scheme", "ftp://x/", Options{}, []string{"not ws or wss"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.URL = tc.url
			t0 := time.Now()
			c, err := Dial(context.Background(), tc.o)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if el := time.Since(t0); el > 5*time.Second {
				t.Errorf("took %v", el)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, "sekrit") || strings.Contains(msg, "\n") {
				t.Errorf("error leaks the token or spans lines: %q", msg)
			}
		})
	}
}

func TestInsecure(t *testing.T) {
	s := newServer(t, newTestCA(t))
	c, err := Dial(context.Background(), Options{URL: s.wsURL(), Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// A server that stops answering pings is detected within two intervals, and
// Run reports it instead of hanging.
func TestPingTimeout(t *testing.T) {
	s := newServer(t, nil)
	s.noRead = true
	_, _, res := runBridge(t, Options{URL: s.wsURL(), PingInterval: 200 * time.Millisecond})
	err := wait(t, res, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "no answer to a WebSocket ping") {
		t.Fatalf("Run = %v, want the ping failure", err)
	}
}

// Pings that are answered keep the connection and do not disturb the stream.
func TestPingAnswered(t *testing.T) {
	s := newServer(t, nil)
	// Each pong has an interval to come back: 250 ms, not less, or a loaded
	// machine (or wine, with Windows's 15.6 ms timer ticks) misses one.
	in, out, res := runBridge(t, Options{URL: s.wsURL(), PingInterval: 250 * time.Millisecond})
	buf := make([]byte, 3)
	for i := 0; i < 10; i++ {
		in.Write([]byte("abc"))
		if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "abc" {
			t.Fatalf("round %d: %q %v", i, buf, err)
		}
		time.Sleep(100 * time.Millisecond) // spans several ping intervals on purpose
	}
	in.Close()
	if err := wait(t, res, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// The server closing the WebSocket ends Run: normally → nil, abruptly → error.
func TestServerCloses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status websocket.StatusCode
		ok     bool
	}{{"normal", websocket.StatusNormalClosure, true}, {"error", websocket.StatusInternalError, false}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := websocket.Accept(w, r, nil)
				if err != nil {
					return
				}
				c.Write(r.Context(), websocket.MessageBinary, []byte("SSH-2.0-test\r\n"))
				c.Close(tc.status, "bye")
			}))
			defer srv.Close()
			_, out, res := runBridge(t, Options{URL: strings.Replace(srv.URL, "http", "ws", 1)})
			b, _ := io.ReadAll(out)
			if string(b) != "SSH-2.0-test\r\n" {
				t.Errorf("stdout %q", b)
			}
			err := wait(t, res, 10*time.Second)
			if (err == nil) != tc.ok {
				t.Fatalf("Run = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// A gateway whose sshd is down accepts the WebSocket and closes it at once:
// that is an error naming the sshd, not a silent success.
func TestServerClosesBeforeSSH(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.Close(websocket.StatusGoingAway, "Failed to connect to downstream server")
	}))
	defer srv.Close()
	_, _, res := runBridge(t, Options{URL: strings.Replace(srv.URL, "http", "ws", 1)})
	err := wait(t, res, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "before sshd said anything") {
		t.Fatalf("Run = %v, want the sshd-not-running error with the server's reason", err)
	}
}

func TestRedacted(t *testing.T) {
	got := Redacted("wss://u:pw@hub.example/user/x/sshd/?token=abc&a=b")
	if strings.Contains(got, "abc") || strings.Contains(got, "pw") || !strings.Contains(got, "hub.example/user/x/sshd/") {
		t.Fatalf("Redacted = %q", got)
	}
}
