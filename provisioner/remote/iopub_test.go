//go:build linux

package remote

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pattern is n bytes that say where they are: every 8-byte word is its
// own offset, so a byte lost, doubled or moved shows.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.BigEndian.PutUint64(b[i:], uint64(i))
	}
	return b
}

// firstDiff is where got stops matching want.
func firstDiff(got, want []byte) int {
	i := 0
	for i < min(len(got), len(want)) && got[i] == want[i] {
		i++
	}
	return i
}

// pubStream is the local side of a relayed iopub stream, read frame by
// frame: the data, the supervisor's acks of what reached the kernel, notes.
type pubStream struct {
	t     *testing.T
	conn  net.Conn
	br    *bufio.Reader
	got   []byte
	acked uint64 // the supervisor's last ack: bytes of ours the kernel took
	sent  uint64 // our last ack of got
	notes []string
}

func (p *pubStream) frame() {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	kind, b, err := ReadFrame(p.br, nil)
	if err != nil {
		p.t.Fatalf("read the stream: %v (after %d bytes; acked %d)", err, len(p.got), p.acked)
	}
	switch kind {
	case FrameData:
		p.got = append(p.got, b...)
	case FrameAck:
		p.acked = binary.BigEndian.Uint64(b)
	case FrameNote:
		p.notes = append(p.notes, string(b))
	default:
		p.t.Fatalf("frame %q", kind)
	}
}

// until reads frames until cond holds, acking what arrives when ack is set.
func (p *pubStream) until(ack bool, cond func() bool) {
	p.t.Helper()
	for !cond() {
		if ack && uint64(len(p.got))-p.sent >= 64<<10 {
			p.ack(uint64(len(p.got)))
		}
		p.frame()
	}
}

func (p *pubStream) ack(n uint64) {
	p.t.Helper()
	if _, err := p.conn.Write(AppendAck(nil, n)); err != nil {
		p.t.Fatal(err)
	}
	p.sent = n
}

// feed writes data as the kernel's output: the echo kernel sends back
// what it is sent, so its "iopub" relay carries exactly data.
func feed(t *testing.T, conn net.Conn, data []byte) {
	go func() {
		for len(data) > 0 {
			n := min(len(data), 200<<10)
			if _, err := conn.Write(AppendFrame(nil, FrameData, data[:n])); err != nil {
				return
			}
			data = data[n:]
		}
	}()
}

// spillFiles lists the supervisor's open files in the run dir that are gone
// from it: its spill files.
func spillFiles(sup int, runDir string) []string {
	var out []string
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", sup))
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, runDir+"/") && strings.HasSuffix(l, "(deleted)") {
			out = append(out, l)
		}
	}
	return out
}

func openPub(t *testing.T, ctx context.Context, r *Reply, id string, recv uint64) (*pubStream, StreamHello) {
	t.Helper()
	conn, err := UnixDialer(r.Control)(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h, br, err := OpenStream(ctx, conn, "iopub", id, recv)
	if err != nil {
		t.Fatal(err)
	}
	return &pubStream{t: t, conn: conn, br: br}, h
}

// The kernel's iopub is read however slowly the local side takes it: 16 MiB
// with nothing acknowledged wait in the supervisor (2 MiB in memory, the
// rest in an unlinked file of the run dir), and arrive whole and in order,
// across a channel cut and a resume, once the local side reads on. Every
// other channel still stops reading the kernel at 2 MiB
// (TestRelayStreamFlowControl).
func TestRelayIOPubSpills(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	r := b.launch(Params{KernelName: "echo", Key: "iopub-spill", Grace: time.Minute})
	ctx := tctx(t, 90*time.Second)
	data := pattern(16 << 20)
	p, h := openPub(t, ctx, r, "", 0)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("supervisor log:\n%s", supLog(r))
		}
	})
	feed(t, p.conn, data)
	// The kernel has taken all but the last 256 KiB, and echoed it: the
	// supervisor holds it although we acknowledged nothing.
	p.until(false, func() bool { return p.acked >= uint64(len(data))-256<<10 })
	waitFor(t, "a spill file", 10*time.Second, func() bool { return len(spillFiles(r.SupervisorPID, r.RunDir)) > 0 })
	if len(p.got) > 3<<20 {
		t.Fatalf("%d bytes arrived with none acknowledged: the relay sent more than its window", len(p.got))
	}
	// Read on, acknowledging, then cut the channel mid-way with 1 MiB
	// unacknowledged, and resume where we got to.
	p.until(true, func() bool { return len(p.got) >= 8<<20 })
	p.ack(uint64(len(p.got)) - 1<<20)
	p.conn.Close()
	got := p.got
	q, h2 := openPub(t, ctx, r, h.ID, uint64(len(got)))
	if h2.ID != h.ID {
		t.Fatalf("resumed stream %q, want %q", h2.ID, h.ID)
	}
	q.got, q.sent = got, uint64(len(got))-1<<20
	q.until(true, func() bool { return len(q.got) >= len(data) })
	if !bytes.Equal(q.got, data) {
		t.Fatalf("got %d bytes, want %d; they differ from byte %d", len(q.got), len(data), firstDiff(q.got, data))
	}
	q.ack(uint64(len(q.got)))
	waitFor(t, "the spill files closed", 10*time.Second, func() bool { return len(spillFiles(r.SupervisorPID, r.RunDir)) == 0 })
	if _, err := ctl(r).Shutdown(ctx, 0); err != nil {
		t.Fatal(err)
	}
}

// At the spec's bound (4 MiB here) the relay stops reading the kernel, as
// for the other channels, and says so: in a note to the local side (which
// logs it and tells the running cells) and in the supervisor's log. Once
// the local side reads on, reading resumes and everything arrives in order.
func TestRelayIOPubBound(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	r := b.launch(Params{KernelName: "echo", Key: "iopub-bound", Grace: time.Minute, IOPubBacklog: 4 << 20, Tag: "my_spec"})
	ctx := tctx(t, 90*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("supervisor log:\n%s", supLog(r))
		}
	})
	data := pattern(16 << 20)
	p, _ := openPub(t, ctx, r, "", 0)
	feed(t, p.conn, data)
	p.until(false, func() bool { return len(p.notes) > 0 })
	if n := p.notes[0]; !strings.Contains(n, "MiB of output wait for the link, the bound") ||
		!strings.Contains(n, "gopyk edit --kernel-name my_spec --iopub-backlog MIB") {
		t.Errorf("note to the local side: %q", n)
	}
	if log := supLog(r); !strings.Contains(log, "reading its output pauses") {
		t.Errorf("the supervisor log does not say it pauses:\n%s", log)
	}
	p.until(true, func() bool { return len(p.got) >= len(data) })
	if !bytes.Equal(p.got, data) {
		t.Fatalf("got %d bytes, want %d; they differ from byte %d", len(p.got), len(data), firstDiff(p.got, data))
	}
	p.ack(uint64(len(p.got)))
	waitFor(t, "the log to say reading resumed", 10*time.Second, func() bool {
		return strings.Contains(supLog(r), "reading the kernel's output again")
	})
	if len(p.notes) != 1 {
		t.Errorf("notes: %q, want one", p.notes)
	}
	if _, err := ctl(r).Shutdown(ctx, 0); err != nil {
		t.Fatal(err)
	}
}
