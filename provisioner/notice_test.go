package provisioner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopyk/gopyk/wire"
)

// zmtpGreeting is a ZMTP 3.1 greeting with the NULL mechanism.
func zmtpGreeting() []byte {
	g := make([]byte, zmtpGreetingLen)
	g[0], g[9], g[10], g[11] = 0xFF, 0x7F, 3, 1
	copy(g[12:], "NULL")
	return g
}

// zmtpCmd is a command frame: name, then data.
func zmtpCmd(name string, data []byte) []byte {
	body := append([]byte{byte(len(name))}, name...)
	body = append(body, data...)
	return append([]byte{zmtpCommand, byte(len(body))}, body...)
}

// jmsg is a Jupyter message's frames, signed by s.
func jmsg(t *testing.T, s *wire.Signer, ids []string, msgType string, parent []byte, content any) [][]byte {
	t.Helper()
	h, _ := json.Marshal(wire.Header{MsgID: wire.NewID(), Session: "s", Username: "u", Date: "2026-01-01T00:00:00.000000Z", MsgType: msgType, Version: "5.3"})
	if parent == nil {
		parent = []byte("{}")
	}
	c, _ := json.Marshal(content)
	meta := []byte("{}")
	var frames [][]byte
	for _, id := range ids {
		frames = append(frames, []byte(id))
	}
	return append(frames, []byte(wire.Delimiter), []byte(s.Sign(h, parent, meta, c)), h, parent, meta, c)
}

// A scan sees the same messages and boundaries however the bytes are split.
func TestZMTPScanAnySplit(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 1000) // a long frame
	var stream []byte
	stream = append(stream, zmtpGreeting()...)
	stream = append(stream, zmtpReady("PUB")...)
	var ends []int // offsets where a message ends
	for _, m := range [][][]byte{{[]byte("a")}, {[]byte("t"), big, {}}, {{}, []byte("z")}} {
		stream = appendZMTP(stream, m)
		ends = append(ends, len(stream))
	}
	for _, step := range []int{1, 2, 3, 7, 64, 65, 1000, len(stream)} {
		var got [][][]byte
		z := zmtpScan{capture: 512, onMsg: func(f [][]byte) {
			cp := make([][]byte, len(f))
			copy(cp, f)
			got = append(got, cp)
		}}
		var bounds []int
		for i := 0; i < len(stream); i += step {
			j := min(i+step, len(stream))
			for k := i; k < j; k++ { // one byte at a time within the step, to see every boundary
				z.feed(stream[k : k+1])
				if z.boundary() {
					bounds = append(bounds, k+1)
				}
			}
		}
		want := append([]int{len(zmtpGreeting()) + len(zmtpReady("PUB"))}, ends...)
		if !equalInts(bounds, want) {
			t.Fatalf("step %d: boundaries %v, want %v", step, bounds, want)
		}
		if len(got) != 3 || string(got[0][0]) != "a" || got[1][1] != nil || len(got[1]) != 3 || string(got[2][1]) != "z" {
			t.Fatalf("step %d: messages %q", step, got)
		}
	}
	var z zmtpScan
	z.feed([]byte{0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 1}) // ZMTP 2.0
	if !z.broken {
		t.Fatal("a ZMTP 2.0 greeting was followed")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// zmtpClient reads a client's side of a connection: every byte, and the
// whole messages after the handshake.
type zmtpClient struct {
	mu    sync.Mutex
	n     int
	msgs  [][][]byte
	err   error
	scan  zmtpScan
	ready chan struct{} // pinged on every read
}

func readZMTP(c net.Conn) *zmtpClient {
	z := &zmtpClient{ready: make(chan struct{}, 1)}
	z.scan = zmtpScan{capture: 1 << 20, onMsg: func(f [][]byte) {
		cp := make([][]byte, len(f))
		copy(cp, f)
		z.msgs = append(z.msgs, cp)
	}}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			z.mu.Lock()
			z.n += k
			z.scan.feed(buf[:k])
			if z.scan.broken && z.err == nil {
				z.err = errors.New("the client's stream is not ZMTP any more")
			}
			if err != nil && z.err == nil {
				z.err = err
			}
			z.mu.Unlock()
			select {
			case z.ready <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return z
}

// wait waits until cond holds over (bytes read, messages).
func (z *zmtpClient) wait(t *testing.T, what string, cond func(n int, msgs [][][]byte) bool) [][][]byte {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		z.mu.Lock()
		ok, msgs, err := cond(z.n, z.msgs), z.msgs, z.err
		z.mu.Unlock()
		if ok {
			return msgs
		}
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		select {
		case <-z.ready:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A cell running when the connection is lost hears of it on iopub, between
// the kernel's own messages, and hears of the reconnect before the output
// the kernel wrote meanwhile; a message cut in half by the loss stays whole.
func TestNoticesBetweenKernelMessages(t *testing.T) {
	defer func(d time.Duration) { noticeAfter = d }(noticeAfter)
	noticeAfter = 0
	ci := wire.ConnInfo{Key: "secret", SignatureScheme: wire.SchemeHMACSHA256}
	signer, _ := ci.Signer()
	n := newNotices("gpu-box", ci, true, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer n.close()

	kernels := make(chan net.Conn, 1)
	r := newFakeRelay(t, func() net.Conn {
		a, b := net.Pipe()
		kernels <- b
		return a
	})
	ln, err := listenLocal("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	f := newForwarder("iopub", ln, r.open, func(context.Context) error { return nil }, n.tap, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { f.serve(ctx); close(served) }()
	defer func() { cancel(); f.close(); <-served }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The client's side of the handshake and its subscription to everything
	// (ZMTP 3.0's form, as libzmq sends it).
	hello := append(append(zmtpGreeting(), zmtpReady("SUB")...), appendZMTP(nil, [][]byte{{1}})...)
	c.Write(hello)
	cr := readZMTP(c)
	k := <-kernels
	defer k.Close()
	// A PUB socket sends nothing before it has the subscription: the
	// kernel's side reads it first, so gopyk has seen it too.
	k.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(k, make([]byte, len(hello))); err != nil {
		t.Fatalf("the kernel's side waiting for the subscription: %v", err)
	}
	hs := append(zmtpGreeting(), zmtpReady("PUB")...)
	k.Write(hs)
	first := appendZMTP(nil, jmsg(t, signer, []string{"status"}, "status", nil, map[string]string{"execution_state": "busy"}))
	k.Write(first)
	cr.wait(t, "the first message", func(_ int, m [][][]byte) bool { return len(m) == 1 })

	// The cell, as a shell client sends it.
	shell := n.tap("shell", nil)
	req := jmsg(t, signer, nil, "execute_request", nil, map[string]any{"code": "sleep(30)"})
	shell.fromClient(append(append(zmtpGreeting(), zmtpReady("DEALER")...), appendZMTP(nil, req)...))

	// Half a message goes out, the link dies, the rest waits on the remote.
	half := appendZMTP(nil, jmsg(t, signer, []string{"stream.stdout"}, "stream", req[2], map[string]string{"name": "stdout", "text": strings.Repeat("y", 3000)}))
	k.Write(half[:len(half)/2])
	upto := len(hs) + len(first) + len(half)/2
	cr.wait(t, "half a message", func(n int, _ [][][]byte) bool { return n == upto })
	r.cut()
	k.Write(half[len(half)/2:])
	after := appendZMTP(nil, jmsg(t, signer, []string{"stream.stdout"}, "stream", req[2], map[string]string{"name": "stdout", "text": "done"}))
	k.Write(after)
	n.lost(time.Now())
	for deadline := time.Now().Add(10 * time.Second); !n.toldOutage(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the loss was not told within 10 s")
		}
	}
	n.up()
	r.restore()

	msgs := cr.wait(t, "four messages more", func(_ int, m [][][]byte) bool { return len(m) == 5 })[1:]
	texts := make([]string, len(msgs))
	for i, m := range msgs {
		header, parent, content, ok := jupyterParts(m)
		if !ok {
			t.Fatalf("message %d is not a Jupyter message: %q", i, m)
		}
		d := len(m) - 6
		if got, want := string(m[d+1]), signer.Sign(header, parent, m[d+4], content); got != want {
			t.Errorf("message %d: signature %s, want %s", i, got, want)
		}
		if !bytes.Equal(parent, req[2]) {
			t.Errorf("message %d: parent_header %s, want the request's header %s", i, parent, req[2])
		}
		var ct struct{ Name, Text string }
		json.Unmarshal(content, &ct)
		texts[i] = ct.Name + ": " + ct.Text
	}
	if len(texts[0]) != len("stdout: ")+3000 || !strings.HasPrefix(texts[1], "stderr: gopyk: connection to gpu-box lost at ") ||
		!strings.HasPrefix(texts[2], "stderr: gopyk: reconnected after ") || !strings.HasSuffix(texts[2], "; nothing was lost\n") || texts[3] != "stdout: done" {
		t.Fatalf("the client got, in order:\n%s", strings.Join(texts, "\n"))
	}
}

func (n *notices) toldOutage() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.told
}
