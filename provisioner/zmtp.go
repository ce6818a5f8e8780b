package provisioner

import "encoding/binary"

// ZMTP 3 framing (rfc.zeromq.org/spec/23, /spec/37), as much as following a
// connection's bytes needs: a 64-byte greeting, then frames of a flags byte
// (MORE, LONG, COMMAND), a 1- or 8-byte size and the body. A message is
// frames up to one without MORE; commands (READY, SUBSCRIBE…) are single
// frames.
const (
	zmtpGreetingLen = 64
	zmtpMore        = 1
	zmtpLong        = 2
	zmtpCommand     = 4
)

// zmtpScan follows one direction of a ZMTP connection as its bytes pass,
// without holding them up: where frames and messages end, and (capture > 0)
// the bodies of frames up to capture bytes, for onMsg. A stream that is not
// ZMTP 3 (an older peer, or garbage) is marked broken and no longer followed.
type zmtpScan struct {
	capture int                   // 0: follow boundaries only
	onMsg   func(frames [][]byte) // a whole message; a frame too big to capture is nil
	onCmd   func(body []byte)     // a command frame (captured)
	greet   int                   // greeting bytes passed
	hdr     [9]byte               // the frame header being read
	hn, hl  int                   // header bytes read, header length
	body    uint64                // body bytes still to pass
	flags   byte                  // of the frame being passed
	cur     []byte                // its body, when captured
	capt    bool                  // cur is being captured
	frames  [][]byte              // the open message's frames (capture only)
	cmdSeen bool                  // a command passed: the handshake (READY) is done
	open    bool                  // a message has begun and not ended
	broken  bool
}

// greeting checks byte i of the greeting: the signature's first and last
// bytes and the major version.
func (z *zmtpScan) greeting(i int, b byte) bool {
	switch i {
	case 0:
		return b == 0xFF
	case 9:
		return b == 0x7F // ZMTP 1.0 peers put a flags byte here
	case 10:
		return b >= 3 // ZMTP 2.0 frames differently
	}
	return true
}

func (z *zmtpScan) feed(p []byte) { z.scan(p, false) }

// feedToBoundary feeds p up to the first message boundary in it and
// returns how many bytes it took (all of p when there is none).
func (z *zmtpScan) feedToBoundary(p []byte) int { return z.scan(p, true) }

func (z *zmtpScan) scan(p []byte, stop bool) int {
	total := len(p)
	for len(p) > 0 && !z.broken {
		if stop && z.boundary() {
			return total - len(p)
		}
		switch {
		case z.greet < zmtpGreetingLen:
			n := min(zmtpGreetingLen-z.greet, len(p))
			for i := 0; i < n; i++ {
				if !z.greeting(z.greet+i, p[i]) {
					z.broken = true
					return total
				}
			}
			z.greet += n
			p = p[n:]
		case z.body > 0:
			n := uint64(len(p))
			if n > z.body {
				n = z.body
			}
			if z.capt {
				z.cur = append(z.cur, p[:n]...)
			}
			z.body -= n
			p = p[n:]
			if z.body == 0 {
				z.endFrame()
			}
		default:
			if z.hn == 0 {
				z.flags = p[0]
				if z.flags&^(zmtpMore|zmtpLong|zmtpCommand) != 0 {
					z.broken = true
					return total
				}
				z.hl = 2
				if z.flags&zmtpLong != 0 {
					z.hl = 9
				}
			}
			n := min(z.hl-z.hn, len(p))
			copy(z.hdr[z.hn:], p[:n])
			z.hn += n
			p = p[n:]
			if z.hn < z.hl {
				continue
			}
			z.hn = 0
			if z.hl == 2 {
				z.body = uint64(z.hdr[1])
			} else {
				z.body = binary.BigEndian.Uint64(z.hdr[1:9])
			}
			if z.flags&zmtpCommand != 0 {
				z.capt = z.onCmd != nil && z.body <= 4096
			} else {
				z.capt = z.capture > 0 && z.body <= uint64(z.capture)
			}
			z.cur = nil
			if z.capt {
				z.cur = make([]byte, 0, z.body)
			}
			if z.body == 0 {
				z.endFrame()
			}
		}
	}
	return total
}

func (z *zmtpScan) endFrame() {
	if z.flags&zmtpCommand != 0 {
		z.cmdSeen = true
		if z.onCmd != nil && z.capt {
			z.onCmd(z.cur)
		}
		return
	}
	if z.capture > 0 {
		var f []byte
		if z.capt {
			f = z.cur
		}
		z.frames = append(z.frames, f)
	}
	if z.flags&zmtpMore != 0 {
		z.open = true
		return
	}
	z.open = false
	if z.onMsg != nil {
		z.onMsg(z.frames)
	}
	z.frames = z.frames[:0]
}

// boundary reports whether the bytes so far end between two whole messages
// after the handshake: where another message may go in.
func (z *zmtpScan) boundary() bool {
	return !z.broken && z.greet == zmtpGreetingLen && z.cmdSeen && z.hn == 0 && z.body == 0 && !z.open
}

// appendZMTP appends a message's frames.
func appendZMTP(dst []byte, frames [][]byte) []byte {
	for i, f := range frames {
		var flags byte
		if i < len(frames)-1 {
			flags = zmtpMore
		}
		if len(f) > 255 {
			dst = append(dst, flags|zmtpLong)
			dst = binary.BigEndian.AppendUint64(dst, uint64(len(f)))
		} else {
			dst = append(dst, flags, byte(len(f)))
		}
		dst = append(dst, f...)
	}
	return dst
}
