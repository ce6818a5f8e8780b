//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gopyk/gopyk/wire"
)

type jserver struct {
	t     *testing.T
	base  string
	token string
}

func (e *env) startServer() *jserver {
	e.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	token := wire.NewKey()
	p := e.start(python, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ip=127.0.0.1",
		fmt.Sprintf("--port=%d", port), "--port-retries=0", "--ServerApp.token="+token,
		"--ServerApp.root_dir="+e.home)
	s := &jserver{t: e.t, base: fmt.Sprintf("http://127.0.0.1:%d", port), token: token}
	waitFor(e.t, 60*time.Second, "jupyter server /api", func() bool {
		select {
		case <-p.done:
			e.t.Fatalf("jupyter server exited: %s", p.output())
		default:
		}
		resp, err := http.Get(s.base + "/api")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return s
}

func (s *jserver) do(method, path string, body any) (int, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	req.Header.Set("Authorization", "token "+s.token)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// wsKernel is the kernel WebSocket JupyterLab uses.
type wsKernel struct {
	t  *testing.T
	c  *websocket.Conn
	in chan map[string]any
}

func (s *jserver) channels(id string) *wsKernel {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := strings.Replace(s.base, "http", "ws", 1) + "/api/kernels/" + id + "/channels?token=" + s.token
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		s.t.Fatalf("kernel websocket: %v", err)
	}
	c.SetReadLimit(64 << 20)
	w := &wsKernel{t: s.t, c: c, in: make(chan map[string]any, 1000)}
	go func() {
		defer close(w.in)
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(b, &m) == nil {
				w.in <- m
			}
		}
	}()
	s.t.Cleanup(func() { c.CloseNow() })
	w.nudge()
	return w
}

// nudge sends kernel_info requests until iopub delivers, as jupyter-server
// does on a new WebSocket, except when it takes the kernel for busy (its
// handlers.py: "not nudging busy kernel"): then a cell sent at once can run
// before the new iopub subscription reaches the kernel, and ZMQ's PUB drops
// its output (a local kernel too; through SSH the window is a round trip).
func (w *wsKernel) nudge() {
	w.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		w.send("kernel_info_request", map[string]any{})
		wait := time.After(500 * time.Millisecond)
		for waiting := true; waiting; {
			select {
			case m, ok := <-w.in:
				if !ok {
					w.t.Fatal("kernel websocket closed")
				}
				if m["channel"] == "iopub" {
					return
				}
			case <-wait:
				waiting = false
			}
		}
	}
	w.t.Fatal("iopub delivered nothing within 60 s of kernel_info requests")
}

func (w *wsKernel) send(msgType string, content map[string]any) string {
	id := wire.NewID()
	m := map[string]any{
		"header":        map[string]any{"msg_id": id, "msg_type": msgType, "username": "e2e", "session": "e2e", "date": time.Now().UTC().Format(time.RFC3339), "version": "5.3"},
		"parent_header": map[string]any{}, "metadata": map[string]any{}, "content": content, "channel": "shell", "buffers": []any{},
	}
	b, _ := json.Marshal(m)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatalf("websocket write: %v", err)
	}
	return id
}

type wsResult struct {
	status, ename, text string
}

// execute runs code and waits for both the execute_reply and iopub idle (they
// may arrive in either order).
func (w *wsKernel) execute(code string, d time.Duration) wsResult {
	w.t.Helper()
	id := w.submit(code)
	return w.result(id, d)
}

func (w *wsKernel) submit(code string) string {
	return w.send("execute_request", map[string]any{"code": code, "silent": false, "store_history": false,
		"user_expressions": map[string]any{}, "allow_stdin": false, "stop_on_error": true})
}

func (w *wsKernel) result(id string, d time.Duration) wsResult {
	w.t.Helper()
	r, ok := w.resultWithin(id, d)
	if !ok {
		w.t.Fatalf("no result for execute %s within %v (so far %+v)", id, d, r)
	}
	return r
}

// resultWithin is result that reports a timeout instead of failing.
func (w *wsKernel) resultWithin(id string, d time.Duration) (wsResult, bool) {
	w.t.Helper()
	var r wsResult
	replied, idle := false, false
	timeout := time.After(d)
	for !(replied && idle) {
		select {
		case m, ok := <-w.in:
			if !ok {
				w.t.Fatal("kernel websocket closed")
			}
			ph, _ := m["parent_header"].(map[string]any)
			if ph["msg_id"] != id {
				continue
			}
			c, _ := m["content"].(map[string]any)
			switch m["msg_type"] {
			case "execute_reply":
				replied = true
				r.status, _ = c["status"].(string)
				r.ename, _ = c["ename"].(string)
			case "stream":
				s, _ := c["text"].(string)
				r.text += s
			case "execute_result":
				d, _ := c["data"].(map[string]any)
				s, _ := d["text/plain"].(string)
				r.text += s
			case "status":
				idle = c["execution_state"] == "idle"
			}
		case <-timeout:
			return r, false
		}
	}
	return r, true
}

// waitStarted waits until the cell of request id prints its start marker
// ("busy" alone comes before the cell's code runs).
func (w *wsKernel) waitStarted(id string, d time.Duration) {
	w.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m := <-w.in:
			ph, _ := m["parent_header"].(map[string]any)
			c, _ := m["content"].(map[string]any)
			if text, _ := c["text"].(string); ph["msg_id"] == id && m["msg_type"] == "stream" && strings.Contains(text, "sleeping") {
				return
			}
		case <-timeout:
			w.t.Fatalf("cell %s never started", id)
		}
	}
}

// The path JupyterLab's kernel picker takes: list, start, run, interrupt, restart, delete.
func TestJupyterServerLifecycle(t *testing.T) { serverLifecycle(t, newEnv(t)) }

// serverLifecycle drives e's spec through jupyter-server's REST API and
// WebSocket: a cell, an interrupted sleep, a restart, a delete, and nothing
// left on the remote.
func serverLifecycle(t *testing.T, e *env) {
	s := e.startServer()

	code, b := s.do("GET", "/api/kernelspecs", nil)
	if code != 200 || !strings.Contains(string(b), `"`+e.spec+`"`) {
		t.Fatalf("GET /api/kernelspecs = %d, spec %s missing:\n%s", code, e.spec, b)
	}
	code, b = s.do("POST", "/api/kernels", map[string]any{"name": e.spec})
	if code != 201 {
		t.Fatalf("POST /api/kernels = %d: %s", code, b)
	}
	var k struct{ ID string }
	json.Unmarshal(b, &k)
	ws := s.channels(k.ID)

	r := ws.execute("import getpass; x = 41; print(getpass.getuser())", 90*time.Second)
	if r.status != "ok" || !strings.Contains(r.text, e.sshd.User) {
		t.Fatalf("first cell: %+v (want ok and remote user %s)", r, e.sshd.User)
	}

	id := ws.submit("print('sleeping', flush=True); import time; time.sleep(100)")
	ws.waitStarted(id, 30*time.Second)
	t0 := time.Now()
	// A SIGINT that lands in ipykernel's output flushing (between the print
	// and the sleep) is swallowed there; like a user, press it again.
	for tries := 0; ; tries++ {
		if code, b := s.do("POST", "/api/kernels/"+k.ID+"/interrupt", nil); code != 204 {
			t.Fatalf("interrupt = %d: %s", code, b)
		}
		var ok bool
		if r, ok = ws.resultWithin(id, 2*time.Second); ok {
			break
		}
		if tries == 4 {
			t.Fatal("five interrupts did not stop the cell")
		}
	}
	if r.ename != "KeyboardInterrupt" {
		t.Fatalf("interrupted cell: %+v, want KeyboardInterrupt", r)
	}
	t.Logf("interrupt through jupyter-server: KeyboardInterrupt after %v", time.Since(t0).Round(time.Millisecond))

	if code, b := s.do("POST", "/api/kernels/"+k.ID+"/restart", nil); code != 200 {
		t.Fatalf("restart = %d: %s", code, b)
	}
	ws2 := s.channels(k.ID)
	r = ws2.execute("'x' in dir()", 90*time.Second)
	if r.status != "ok" || !strings.Contains(r.text, "False") {
		t.Fatalf("after restart: %+v, want state cleared (False)", r)
	}

	if code, b := s.do("DELETE", "/api/kernels/"+k.ID, nil); code != 204 {
		t.Fatalf("DELETE = %d: %s", code, b)
	}
	e.waitNoRemote(20 * time.Second)
}
