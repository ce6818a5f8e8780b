//go:build linux

package remote

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// The supervisor's relay (gopyk/relay.py, class Stream) against a kernel that
// echoes: streams open, resume after their channel dies with what was in
// flight sent again, drop what was acknowledged, and end from either side.
func TestRelayStream(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{"ipc", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			b := newBed(t)
			r := b.launch(Params{KernelName: "echo", Key: "relay-test", Transport: transport, Grace: time.Minute})
			ctx := tctx(t, 60*time.Second)
			open := func(channel, id string, recv uint64) (net.Conn, StreamHello, *bufio.Reader, error) {
				t.Helper()
				conn, err := UnixDialer(r.Control)(ctx)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				h, br, err := OpenStream(ctx, conn, channel, id, recv)
				return conn, h, br, err
			}
			expect := func(br *bufio.Reader, kind byte, payload string) {
				t.Helper()
				k, p, err := ReadFrame(br, nil)
				if err != nil || k != kind || string(p) != payload {
					t.Fatalf("frame %q %q, %v; want %q %q", k, p, err, kind, payload)
				}
			}
			send := func(conn net.Conn, frame []byte) {
				t.Helper()
				if _, err := conn.Write(frame); err != nil {
					t.Fatal(err)
				}
			}

			c1, h, br, err := open("shell", "", 0)
			if err != nil || h.ID == "" || h.Recv != 0 {
				t.Fatalf("new stream: %+v, %v", h, err)
			}
			send(c1, AppendFrame(nil, FrameData, []byte("hello\n")))
			expect(br, FrameData, "hello\n")
			// The channel dies with an answer in flight that we never read.
			send(c1, AppendFrame(nil, FrameData, []byte("world\n")))
			c1.Close()

			c2, h2, br, err := open("", h.ID, 6)
			if err != nil || h2.ID != h.ID || h2.Recv != 12 {
				t.Fatalf("resume: %+v, %v; want recv 12", h2, err)
			}
			expect(br, FrameData, "world\n") // sent again
			send(c2, AppendAck(nil, 12))
			send(c2, AppendFrame(nil, FrameData, []byte("again\n")))
			expect(br, FrameData, "again\n") // so the ack was taken too
			var re *ReplyError
			if _, _, _, err := open("", h.ID, 6); !errors.As(err, &re) || re.Code != "bad_request" {
				t.Fatalf("resume before what was acknowledged: %v; want bad_request", err)
			}
			send(c2, AppendFrame(nil, FrameData, []byte("still\n"))) // the bad resume left this channel alone
			expect(br, FrameData, "still\n")

			// The local side ends the stream.
			send(c2, AppendFrame(nil, FrameFin, nil))
			expect(br, FrameFin, "")
			if _, _, _, err := open("", h.ID, 24); !errors.As(err, &re) || re.Code != CodeNoStream {
				t.Fatalf("resume after the end: %v; want %s", err, CodeNoStream)
			}
			if st, err := ctl(r).Status(ctx); err != nil || st.Streams != 0 {
				t.Fatalf("status after the only stream ended: %d streams, %v", st.Streams, err)
			}

			// The kernel ends a stream.
			c3, _, br, err := open("iopub", "", 0)
			if err != nil {
				t.Fatal(err)
			}
			send(c3, AppendFrame(nil, FrameData, []byte("close\n")))
			expect(br, FrameFin, "")

			if _, _, _, err := open("nonsense", "", 0); !errors.As(err, &re) || re.Code != "bad_request" {
				t.Fatalf("unknown channel: %v", err)
			}
			if _, err := ctl(r).Shutdown(ctx, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Whatever the relay sends, ReadFrame returns frames that obey the format
// or an error, never more than MaxFrame bytes, and AppendFrame's output
// reads back as written.
func FuzzReadFrame(f *testing.F) {
	f.Add(AppendFrame(nil, FrameData, []byte("hello")))
	f.Add(AppendAck(nil, 1<<40))
	f.Add(AppendFrame(nil, FrameFin, nil))
	f.Add([]byte{FrameData, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{FrameAck, 0, 0, 0, 3, 1, 2, 3})
	f.Add([]byte("D\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		var out []byte
		for {
			kind, p, err := ReadFrame(br, nil)
			if err != nil {
				break
			}
			switch {
			case len(p) > MaxFrame:
				t.Fatalf("frame of %d bytes", len(p))
			case kind == FrameAck && len(p) != 8, kind == FrameFin && len(p) != 0:
				t.Fatalf("frame %q with %d bytes", kind, len(p))
			}
			out = AppendFrame(out, kind, p)
		}
		if !bytes.HasPrefix(in, out) {
			t.Fatalf("frames read back as %q, not a prefix of the input %q", out, in)
		}
	})
}

// Five streams at once push 2 MiB each through the real relay in chunks of
// random size, with their channels cut at random points four times: every
// stream gets back exactly what it sent, in order.
func TestRelayStreamStress(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	r := b.launch(Params{KernelName: "echo", Key: "relay-stress", Grace: time.Minute})
	ctx := tctx(t, 120*time.Second)
	var wg sync.WaitGroup
	for i, channel := range []string{"shell", "iopub", "stdin", "control", "hb"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			data := make([]byte, 2<<20)
			for j := range data {
				data[j] = byte(rng.IntN(256))
			}
			if err := stressStream(ctx, r.Control, channel, data, rng, 4); err != nil {
				t.Errorf("%s: %v", channel, err)
			}
		}()
	}
	wg.Wait()
	if _, err := ctl(r).Shutdown(ctx, 0); err != nil {
		t.Fatal(err)
	}
}

// stressStream sends data on a new stream and reads it back, cutting the
// channel at random points the given number of times.
func stressStream(ctx context.Context, control, channel string, data []byte, rng *rand.Rand, cuts int) error {
	var (
		id    string
		got   []byte
		acked int
	)
	for epoch := 0; ; epoch++ {
		conn, err := UnixDialer(control)(ctx)
		if err != nil {
			return err
		}
		h, br, err := OpenStream(ctx, conn, channel, id, uint64(len(got)))
		if err != nil {
			conn.Close()
			return fmt.Errorf("epoch %d: %w", epoch, err)
		}
		id = h.ID
		last := epoch == cuts
		cut := len(data)
		if !last {
			cut = min(len(data), int(h.Recv)+rng.IntN(600<<10))
		}
		werr := make(chan error, 1)
		wrng := rand.New(rand.NewPCG(rng.Uint64(), 1)) // the writer's own
		go func() {
			var frame []byte
			for pos := int(h.Recv); pos < cut; {
				n := min(cut-pos, 1+wrng.IntN(100<<10))
				frame = AppendFrame(frame[:0], FrameData, data[pos:pos+n])
				if _, err := conn.Write(frame); err != nil {
					werr <- err
					return
				}
				pos += n
			}
			if !last {
				conn.Close() // the cut: what is still in flight either way is lost
			}
			werr <- nil
		}()
		for len(got) < len(data) {
			kind, p, err := ReadFrame(br, nil)
			if err != nil {
				break
			}
			if kind == FrameAck {
				continue
			}
			if kind != FrameData {
				conn.Close()
				return fmt.Errorf("epoch %d: frame %q", epoch, kind)
			}
			got = append(got, p...)
			// At random, and always before the relay's window fills (as
			// the real local side does): a receiver that never acks stalls.
			if rng.IntN(4) == 0 || len(got)-acked >= 256<<10 {
				conn.Write(AppendAck(nil, uint64(len(got))))
				acked = len(got)
			}
		}
		if err := <-werr; err != nil && last {
			return fmt.Errorf("epoch %d: write: %w", epoch, err)
		}
		if !bytes.Equal(got, data[:len(got)]) {
			conn.Close()
			return fmt.Errorf("epoch %d: echo differs from what was sent within the first %d bytes", epoch, len(got))
		}
		if last {
			conn.Write(AppendFrame(nil, FrameFin, nil))
			conn.Close()
			if len(got) != len(data) {
				return fmt.Errorf("got %d of %d bytes", len(got), len(data))
			}
			return nil
		}
		conn.Close()
	}
}

// 24 MiB in one go, many times the relay's window: a kernel that writes
// before it reads (the echo one) must not deadlock the relay, which has to
// keep reading the channel (acks come on it) while the kernel is slow.
func TestRelayStreamFlowControl(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	r := b.launch(Params{KernelName: "echo", Key: "relay-flow", Grace: time.Minute})
	ctx := tctx(t, 60*time.Second)
	data := bytes.Repeat([]byte("0123456789abcdef"), 24<<20/16)
	if err := stressStream(ctx, r.Control, "shell", data, rand.New(rand.NewPCG(1, 2)), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl(r).Shutdown(ctx, 0); err != nil {
		t.Fatal(err)
	}
}
