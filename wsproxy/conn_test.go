package wsproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Writes made while a message is on its way go out together as the next
// message; every byte arrives once, in order, and Close sends the rest.
func TestWritesCoalesced(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	var got bytes.Buffer
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.SetReadLimit(-1)
		defer close(done)
		for {
			_, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			mu.Lock()
			sizes = append(sizes, len(b))
			got.Write(b)
			mu.Unlock()
		}
	}))
	defer srv.Close()
	nc, err := Dial(context.Background(), Options{URL: strings.Replace(srv.URL, "http://", "ws://", 1), PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := 0; i < 2000; i++ {
		p := bytes.Repeat([]byte{byte(i)}, 36+i%100)
		want.Write(p)
		if _, err := nc.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte("x"), 3*maxPending)
	want.Write(big)
	if _, err := nc.Write(big); err != nil {
		t.Fatal(err)
	}
	if err := nc.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("server still reading after Close")
	}
	mu.Lock()
	defer mu.Unlock()
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("server got %d bytes, want %d (or in another order)", got.Len(), want.Len())
	}
	if len(sizes) >= 2001 {
		t.Errorf("%d messages for 2001 writes made back to back: nothing was coalesced", len(sizes))
	}
	t.Logf("2001 writes went out as %d messages", len(sizes))
	nc.Write([]byte("late"))
}

// acceptRaw answers one WebSocket upgrade by hand and returns the raw
// connection, so a test can write what a misbehaving proxy writes.
func acceptRaw(t *testing.T, l net.Listener) net.Conn {
	c, err := l.Accept()
	if err != nil {
		t.Error(err)
		return nil
	}
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		t.Error(err)
		c.Close()
		return nil
	}
	h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
		base64.StdEncoding.EncodeToString(h[:])+"\r\n\r\n")
	return c
}

// configurable-http-proxy, when the server behind an open WebSocket stops,
// writes an HTTP error page into the upgraded connection; coder/websocket
// reads its "H" as a frame with RSV1 set. The error says what happened.
func TestServerStoppedTranslated(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write string
		kind  error
		want  string
	}{
		{"HTTP inside the WebSocket", "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n", ErrServerGone, "the server stopped"},
		{"close frame", "\x88\x0c\x03\xf3going down", ErrServerGone, "the server closed the WebSocket (status 1011, \"going down\")"},
		{"TCP closed", "", ErrConnectionLost, "without a WebSocket close"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				c := acceptRaw(t, l)
				if c == nil {
					return
				}
				io.WriteString(c, tc.write)
				c.Close()
			}()
			nc, err := Dial(context.Background(), Options{URL: "ws://" + l.Addr().String() + "/", PingInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_, err = nc.Read(make([]byte, 10))
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read: %v; want %v saying %q", err, tc.kind, tc.want)
			}
			if strings.Contains(err.Error(), "rsv bits") || strings.Contains(err.Error(), "failed to get reader") {
				t.Errorf("the library's words leak: %v", err)
			}
		})
	}
}

// A send that fails (the server went away) is reported by a later Write,
// which never hangs, and Close still returns.
func TestWriteAfterServerGone(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c := acceptRaw(t, l); c != nil {
			c.Close()
		}
	}()
	nc, err := Dial(context.Background(), Options{URL: "ws://" + l.Addr().String() + "/", PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	failed := make(chan error, 1)
	go func() {
		for {
			if _, err := nc.Write(make([]byte, 1000)); err != nil {
				failed <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	select {
	case err = <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("writes still succeed (or hang) 10 s after the server closed")
	}
	var we *Error
	if !errors.As(err, &we) {
		t.Errorf("Write error %v is not a wsproxy *Error", err)
	}
	done := make(chan struct{})
	go func() { nc.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs after a failed send")
	}
}
