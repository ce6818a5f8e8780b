//go:build linux

package provisioner

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsGate is a WebSocket gateway to the test sshd, as jupyter-sshd-proxy
// behind a Hub is: while stopped it answers every upgrade with the Hub's
// 302 for a server that is not running, and its open connections are cut.
type wsGate struct {
	srv     *httptest.Server
	stopped atomic.Bool
	refused atomic.Int32 // upgrades answered 302

	mu    sync.Mutex
	conns []net.Conn // client sides
	tcps  []net.Conn // sshd sides
}

func startWSGate(t *testing.T, sshdAddr string) *wsGate {
	g := &wsGate{}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.stopped.Load() {
			g.refused.Add(1)
			http.Redirect(w, r, "http://hub.invalid/hub/user/gpktest/sshd/", http.StatusFound)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ws := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
		tcp, err := net.Dial("tcp", sshdAddr)
		if err != nil {
			ws.Close()
			return
		}
		g.mu.Lock()
		g.conns = append(g.conns, ws)
		g.tcps = append(g.tcps, tcp)
		g.mu.Unlock()
		go io.Copy(tcp, ws)
		io.Copy(ws, tcp)
		ws.Close()
	}))
	t.Cleanup(func() {
		g.srv.Close()
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, c := range g.tcps {
			c.Close()
		}
	})
	return g
}

// stop: the server is stopped; the client's side of what was open through
// it ends, while sshd's side only goes silent, as when a network path dies
// (a closed one would read to the supervisor as a killed gopyk-kernel).
func (g *wsGate) stop() {
	g.stopped.Store(true)
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

// A Hub server stopped under a kernel, for real and at 1/30 scale (10
// minutes in 20 s): the gateway's 302 is asked for about as often as the
// simulated pacing says (TestRetryPaceServerNotRunning: 13 in 10 minutes),
// one INFO line says why in the server's words, and the kernel comes back
// with its state once the server runs again.
func TestReconnectPacedWhileServerStopped(t *testing.T) {
	const scale = 30
	defer func(a, b, c, d time.Duration) { answeredFirst, slowMax, fastFor, backoffMax = a, b, c, d }(answeredFirst, slowMax, fastFor, backoffMax)
	answeredFirst, slowMax, fastFor = answeredFirst/scale, slowMax/scale, fastFor/scale

	b := newBed(t)
	b.cfg.Gopyk.Grace = 300 // the outage outlasts the bed's 5 s
	b.cfg.Log = slog.New(slog.NewTextHandler(b.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g := startWSGate(t, b.sshd.Addr)
	f, err := os.OpenFile(b.sshd.ConfigFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "  ProxyCommand gopyk ws-proxy %s/user/gpktest/sshd/\n", strings.Replace(g.srv.URL, "http", "ws", 1))
	f.Close()
	k := b.launch(t)
	defer k.Shutdown(context.Background())
	if got := execute(t, k, "x = 7; x"); got != "7" {
		t.Fatalf("first cell: %q", got)
	}
	g.stop()
	waitFor(t, 20*time.Second, "the kernel to hear the 302", func() bool { return g.refused.Load() > 0 })
	t0 := time.Now()
	time.Sleep(10 * time.Minute / scale) // the outage itself, not a synchronisation
	n := g.refused.Load()
	infos := b.log.count("level=INFO msg=\"reconnect failed, retrying\"")
	attempts := b.log.count("msg=\"reconnect failed, retrying\"")
	t.Logf("%d upgrades answered 302, %d attempts failed, in %v (10 minutes at 1/%d)", n, attempts, time.Since(t0).Round(time.Millisecond), scale)
	if n > 20 {
		t.Errorf("%d attempts against a stopped server in 10 scaled minutes, want ≤ ~20", n)
	}
	if infos != 1 || !strings.Contains(b.log.String(), "not running") {
		t.Errorf("%d INFO lines for one cause, want 1 in the server's words:\n%s", infos, b.log.String())
	}
	g.stopped.Store(false)
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(b.sshd.LogFile)
			t.Logf("sshd log:\n%s", log[max(0, len(log)-3000):])
		}
	})
	waitFor(t, 20*time.Second, "the reconnect", func() bool { return b.log.count("msg=reconnected") > 0 })
	if got := execute(t, k, "x"); got != "7" {
		t.Fatalf("after the server came back: %q (state lost?)", got)
	}
}
