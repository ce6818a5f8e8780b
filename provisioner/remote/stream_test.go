package remote

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"testing"
	"time"
)

// The supervisor's relay (launcher.py, class Stream) against a kernel that
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
