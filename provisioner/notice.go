package provisioner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopyk/gopyk/wire"
)

// The connection's state, shown where the user looks: under the running
// cell. While the connection is lost, every cell that is running (its
// execute_request went out on shell, its execute_reply has not come back)
// or that is sent meanwhile gets a stderr stream message on iopub, signed
// with the kernel's key and parented to the cell's request, as if the
// kernel had printed it: "connection … lost …, reconnecting…", then
// "reconnected after …" (or why gopyk gave up). JupyterLab, Notebook,
// nbclient and VS Code show it under the cell.
//
// The messages go to the local clients only, between two of the kernel's
// own messages (never inside one: see zmtpScan), and are not part of the
// relay's stream, so its resume offsets do not count them.

// noticeAfter is how long the server must have been silent before a cell
// hears of the loss: a reconnect that mends a blip at once stays invisible.
var noticeAfter = 5 * time.Second

// notices tracks the running cells and tells them about the connection.
type notices struct {
	host    string
	signer  *wire.Signer
	session string
	log     *slog.Logger
	inject  bool // the spec's connection_notices is not off

	mu    sync.Mutex
	cells []*runningCell
	outs  map[*injector]struct{}
	down  bool
	since time.Time // the server was last heard then
	told  bool      // this outage's "lost" notices went out
	timer *time.Timer
	asked shutdownAsk
}

// runningCell is an execute_request without its execute_reply yet.
type runningCell struct {
	id     string
	header []byte // the request's header, verbatim: the notices' parent_header
	owner  *requestTap
}

// shutdownAsk is the last shutdown_request a client sent.
type shutdownAsk struct {
	at      time.Time
	restart bool
	channel string
}

func newNotices(host string, ci wire.ConnInfo, inject bool, log *slog.Logger) *notices {
	n := &notices{host: host, session: wire.NewID(), log: log, inject: inject, outs: map[*injector]struct{}{}}
	s, err := ci.Signer()
	if err != nil {
		// The kernel cannot run with that scheme either; no notices.
		n.inject = false
	}
	n.signer = s
	return n
}

// tap returns what watches a new client connection on channel, or nil.
func (n *notices) tap(channel string, lc net.Conn) tap {
	switch channel {
	case "shell", "control":
		t := &requestTap{n: n, channel: channel, lc: lc}
		t.up = zmtpScan{capture: 64 << 10, onMsg: t.request}
		if channel == "shell" {
			t.down = &zmtpScan{capture: 64 << 10, onMsg: n.reply}
		}
		return t
	case "iopub":
		if !n.inject {
			return nil
		}
		in := &injector{n: n, lc: lc}
		in.up = zmtpScan{onMsg: in.subscribeMsg, onCmd: in.subscribeCmd, capture: 4096}
		n.mu.Lock()
		n.outs[in] = struct{}{}
		n.mu.Unlock()
		return in
	}
	return nil
}

// lost: the connection is gone; the server was last heard at since.
func (n *notices) lost(since time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down, n.since, n.told = true, since, false
	if n.timer != nil {
		n.timer.Stop()
	}
	n.timer = time.AfterFunc(max(time.Until(since.Add(noticeAfter)), 0), n.tellLost)
}

func (n *notices) tellLost() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.down || n.told {
		return
	}
	n.told = true
	for _, c := range n.cells {
		n.tellLostLocked(c)
	}
}

func (n *notices) tellLostLocked(c *runningCell) {
	text := fmt.Sprintf("gopyk: connection to %s lost at %s, reconnecting…\n", n.host, n.since.Format("15:04:05"))
	for in := range n.outs {
		if in.established() {
			in.tell(c, n.message(c, text), true)
		}
	}
}

// up: a new connection is live. Each iopub stream says so when it resumes.
func (n *notices) up() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down = false
	if n.timer != nil {
		n.timer.Stop()
		n.timer = nil
	}
}

// resumed: in's stream resumed where it stopped.
func (n *notices) resumed(in *injector) {
	n.mu.Lock()
	defer n.mu.Unlock()
	text := fmt.Sprintf("gopyk: reconnected after %.1f s; nothing was lost\n", time.Since(n.since).Seconds())
	for _, c := range in.takeTold() {
		in.tell(c, n.message(c, text), false)
	}
}

// ended: the kernel is given up (why); every cell that heard of the loss,
// or is still running, is told, and the messages get a moment to go out.
func (n *notices) ended(why string) {
	n.mu.Lock()
	text := "gopyk: " + why + "\n"
	var outs []*injector
	for in := range n.outs {
		told := in.takeTold()
		for _, c := range n.cells {
			if !containsCell(told, c) {
				told = append(told, c)
			}
		}
		for _, c := range told {
			in.tell(c, n.message(c, text), false)
		}
		outs = append(outs, in)
	}
	n.mu.Unlock()
	deadline := time.After(time.Second)
	for _, in := range outs {
		select {
		case <-in.flushed():
		case <-deadline:
			return
		}
	}
}

func containsCell(cs []*runningCell, c *runningCell) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// message is a stream message on stderr for cell c, as ipykernel sends it.
func (n *notices) message(c *runningCell, text string) []byte {
	h, _ := json.Marshal(wire.Header{MsgID: wire.NewID(), Session: n.session, Username: "gopyk",
		Date: time.Now().UTC().Format("2006-01-02T15:04:05.000000Z07:00"), MsgType: "stream", Version: wire.ProtocolVersion})
	content, _ := json.Marshal(map[string]string{"name": "stderr", "text": text})
	meta := []byte("{}")
	sig := n.signer.Sign(h, c.header, meta, content)
	return appendZMTP(nil, [][]byte{[]byte("stream.stderr"), []byte(wire.Delimiter), []byte(sig), h, c.header, meta, content})
}

// jupyterParts finds a Jupyter message's parts among ZMTP frames.
func jupyterParts(frames [][]byte) (header, parent, content []byte, ok bool) {
	for i, f := range frames {
		if string(f) == wire.Delimiter {
			if len(frames) < i+6 {
				return nil, nil, nil, false
			}
			return frames[i+2], frames[i+3], frames[i+5], frames[i+2] != nil
		}
	}
	return nil, nil, nil, false
}

type msgHeader struct {
	MsgID   string `json:"msg_id"`
	MsgType string `json:"msg_type"`
}

// request follows what a client asks on shell and control.
func (n *notices) request(t *requestTap, frames [][]byte) {
	header, _, content, ok := jupyterParts(frames)
	if !ok {
		return
	}
	var h msgHeader
	switch {
	case bytes.Contains(header, []byte(`"execute_request"`)):
		if json.Unmarshal(header, &h) != nil || h.MsgType != "execute_request" || h.MsgID == "" {
			return
		}
		c := &runningCell{id: h.MsgID, header: bytes.Clone(header), owner: t}
		n.mu.Lock()
		n.cells = append(n.cells, c)
		if n.down && n.told {
			n.tellLostLocked(c)
		}
		n.mu.Unlock()
	case bytes.Contains(header, []byte(`"shutdown_request"`)):
		if json.Unmarshal(header, &h) != nil || h.MsgType != "shutdown_request" {
			return
		}
		var c struct {
			Restart bool `json:"restart"`
		}
		_ = json.Unmarshal(content, &c)
		n.mu.Lock()
		n.asked = shutdownAsk{at: time.Now(), restart: c.Restart, channel: t.channel}
		n.mu.Unlock()
	}
}

// reply follows the kernel's answers on shell: a cell whose execute_reply
// came back is no longer running.
func (n *notices) reply(frames [][]byte) {
	header, parent, _, ok := jupyterParts(frames)
	if !ok || !bytes.Contains(header, []byte(`"execute_reply"`)) {
		return
	}
	var p msgHeader
	if json.Unmarshal(parent, &p) != nil || p.MsgID == "" {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, c := range n.cells {
		if c.id == p.MsgID {
			n.cells = append(n.cells[:i], n.cells[i+1:]...)
			return
		}
	}
}

// lastShutdownAsk is the last shutdown_request a client sent, if any.
func (n *notices) lastShutdownAsk() shutdownAsk {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.asked
}

// forget drops what a client connection that ended had running: its
// replies can no longer arrive.
func (n *notices) forget(t *requestTap) {
	n.mu.Lock()
	defer n.mu.Unlock()
	kept := n.cells[:0]
	for _, c := range n.cells {
		if c.owner != t {
			kept = append(kept, c)
		}
	}
	clear(n.cells[len(kept):])
	n.cells = kept
}

// close stops the pending notice timer; the kernel is done.
func (n *notices) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down = false
	if n.timer != nil {
		n.timer.Stop()
		n.timer = nil
	}
}

func (n *notices) remove(in *injector) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.outs, in)
}

// tap watches one relayed client connection: what the client sends
// (fromClient) and what the relay delivers to it (toClient writes it).
type tap interface {
	fromClient(p []byte)
	toClient(p []byte) error
	resumed()          // the stream resumed after a lost connection
	ended()            // the stream is over; the client's connection is closed
	remark(msg string) // the supervisor's relay says msg about the stream (an iopub backlog at its bound)
}

// requestTap follows a shell or control connection's requests (and, on
// shell, the replies).
type requestTap struct {
	n       *notices
	channel string
	lc      net.Conn
	up      zmtpScan
	down    *zmtpScan // shell only
}

func (t *requestTap) fromClient(p []byte) { t.up.feed(p) }

func (t *requestTap) toClient(p []byte) error {
	_, err := t.lc.Write(p)
	if t.down != nil {
		t.down.feed(p)
	}
	return err
}

func (t *requestTap) request(frames [][]byte) { t.n.request(t, frames) }
func (t *requestTap) resumed()                {}
func (t *requestTap) ended()                  { t.n.forget(t) }
func (t *requestTap) remark(string)           {}

// injector delivers an iopub connection's bytes and puts notices between
// the kernel's messages. Whatever the relay delivers is written as it
// comes; a notice waits until the bytes written so far end on a message
// boundary, so it never splits or reorders the kernel's frames.
type injector struct {
	n  *notices
	lc net.Conn

	wmu   sync.Mutex  // held while writing to lc
	down  zmtpScan    // kernel → client, as written
	ready atomic.Bool // down has passed the kernel's handshake

	// mu guards what follows; it is never held while writing (flushLocked
	// takes it briefly under wmu, never the other way round).

	mu       sync.Mutex
	up       zmtpScan // client → kernel: the subscriptions
	subs     [][]byte
	queue    [][]byte       // notices waiting for a boundary
	inflight int            // notices queued or being written
	told     []*runningCell // cells told of the loss, to be told of the end
	idle     chan struct{}  // closed when queue empties (see flushed)
	wg       sync.WaitGroup
}

const noticeTopic = "stream.stderr"

func (in *injector) fromClient(p []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.up.feed(p)
}

// subscribeMsg is a ZMTP 3.0 subscription: a message 1<topic> or 0<topic>.
func (in *injector) subscribeMsg(frames [][]byte) {
	if len(frames) == 1 && len(frames[0]) > 0 {
		in.subscribe(frames[0][0] == 1, frames[0][1:])
	}
}

// subscribeCmd is a ZMTP 3.1 SUBSCRIBE or CANCEL command.
func (in *injector) subscribeCmd(body []byte) {
	if len(body) == 0 || int(body[0]) >= len(body) {
		return
	}
	name, data := string(body[1:1+body[0]]), body[1+body[0]:]
	switch name {
	case "SUBSCRIBE", "CANCEL":
		in.subscribe(name == "SUBSCRIBE", data)
	}
}

func (in *injector) subscribe(on bool, topic []byte) {
	if on {
		in.subs = append(in.subs, bytes.Clone(topic))
		return
	}
	for i, s := range in.subs {
		if bytes.Equal(s, topic) {
			in.subs = append(in.subs[:i], in.subs[i+1:]...)
			return
		}
	}
}

// established: the kernel's handshake reached this client, which follows
// ZMTP 3 and subscribed to what a notice is sent as.
func (in *injector) established() bool {
	if !in.ready.Load() {
		return false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.up.broken || !in.up.cmdSeen {
		return false
	}
	for _, s := range in.subs {
		if bytes.HasPrefix([]byte(noticeTopic), s) {
			return true
		}
	}
	return false
}

func (in *injector) toClient(p []byte) error {
	in.wmu.Lock()
	defer in.wmu.Unlock()
	in.flushLocked()
	for len(p) > 0 {
		// A notice waiting goes in at the first boundary in p, ahead of
		// what the kernel wrote after it.
		n := len(p)
		if in.waiting() {
			n = in.down.feedToBoundary(p)
		} else {
			in.down.feed(p)
		}
		if _, err := in.lc.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
		if !in.ready.Load() && in.down.greet == zmtpGreetingLen && in.down.cmdSeen && !in.down.broken {
			in.ready.Store(true)
		}
		in.flushLocked()
	}
	return nil
}

// remark tells every running cell what the relay said about this stream:
// the output it misses may be lost, and the user is to hear it there.
func (in *injector) remark(msg string) {
	n := in.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if !in.established() {
		return
	}
	for _, c := range n.cells {
		in.tell(c, n.message(c, "gopyk: "+msg+"\n"), false)
	}
}

func (in *injector) waiting() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.queue) > 0
}

// tell queues msg for the client; lost: c is to hear how the outage ends.
// It never blocks on the client: a goroutine writes it once the stream is
// between messages and the client reads.
func (in *injector) tell(c *runningCell, msg []byte, lost bool) {
	in.mu.Lock()
	in.queue = append(in.queue, msg)
	in.inflight++
	if lost {
		in.told = append(in.told, c)
	}
	in.mu.Unlock()
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		in.wmu.Lock()
		defer in.wmu.Unlock()
		in.flushLocked()
	}()
}

func (in *injector) takeTold() []*runningCell {
	in.mu.Lock()
	defer in.mu.Unlock()
	t := in.told
	in.told = nil
	return t
}

// flushLocked writes the queued notices if the stream is between messages.
func (in *injector) flushLocked() {
	if !in.down.boundary() || !in.waiting() {
		return
	}
	in.mu.Lock()
	q := in.queue
	in.queue = nil
	in.mu.Unlock()
	for _, m := range q {
		if _, err := in.lc.Write(m); err != nil {
			break // the stream is over
		}
	}
	in.mu.Lock()
	in.inflight -= len(q)
	if in.inflight == 0 && in.idle != nil {
		close(in.idle)
		in.idle = nil
	}
	in.mu.Unlock()
}

// flushed is closed once every notice told so far is written (or failed).
func (in *injector) flushed() <-chan struct{} {
	in.mu.Lock()
	defer in.mu.Unlock()
	ch := make(chan struct{})
	if in.inflight == 0 {
		close(ch)
	} else {
		in.idle = ch
	}
	return ch
}

func (in *injector) resumed() { in.n.resumed(in) }

func (in *injector) ended() {
	in.n.remove(in)
	in.wg.Wait() // the client's connection is closed: pending writes fail
}
