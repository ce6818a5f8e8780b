package wsproxy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Dial's conn carries an x/crypto/ssh client whose host key is checked by a
// known_hosts callback: the callback parses RemoteAddr, which must therefore
// be a host:port (coder/websocket's own is "websocket/unknown-addr").
func TestDialCarriesSSHWithKnownHosts(t *testing.T) {
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, _ := ssh.NewSignerFromKey(hostPriv)
	srvCfg := &ssh.ServerConfig{NoClientAuth: true}
	srvCfg.AddHostKey(hostSigner)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		nc := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
		defer nc.Close()
		sc, chans, reqs, err := ssh.NewServerConn(nc, srvCfg)
		if err != nil {
			return
		}
		defer sc.Close()
		go ssh.DiscardRequests(reqs)
		for nch := range chans {
			ch, creqs, err := nch.Accept()
			if err != nil {
				continue
			}
			go func() {
				for req := range creqs {
					if req.Type == "exec" {
						req.Reply(true, nil)
						fmt.Fprintf(ch, "ran %q", string(req.Payload[4:]))
						ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{3}))
						ch.Close()
					}
				}
			}()
		}
	}))
	defer srv.Close()

	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{"gpk-ws-hostkey"}, hostSigner.PublicKey())
	if err := os.WriteFile(kh, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cb, err := knownhosts.New(kh)
	if err != nil {
		t.Fatal(err)
	}

	conn, err := Dial(context.Background(), Options{URL: strings.Replace(srv.URL, "http", "ws", 1) + "/sshd/"})
	if err != nil {
		t.Fatal(err)
	}
	// Handshake deadline, cleared afterwards, as sshconf does for real conns.
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	cc, chans, reqs, err := ssh.NewClientConn(conn, "gpk-ws-hostkey:22", &ssh.ClientConfig{User: "u", HostKeyCallback: cb, Timeout: 10 * time.Second})
	if err != nil {
		conn.Close()
		t.Fatalf("ssh handshake over the WebSocket: %v", err)
	}
	conn.SetDeadline(time.Time{})
	client := ssh.NewClient(cc, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("hostname")
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 || string(out) != `ran "hostname"` {
		t.Fatalf("exec over the WebSocket: out %q err %v, want the output and exit status 3", out, err)
	}
}
