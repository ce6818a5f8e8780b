package launcher

import "runtime"

// tuneRuntime gives the launcher one P once the kernel is ready, unless the
// user set GOMAXPROCS. The launch itself keeps every P: in bench -only launch
// one P from the start looked up to 0.15 s slower (handshake crypto and
// start-up work run side by side), though within the noise.
//
// From then on the launcher only moves small messages between sockets.
// With more than one P, every goroutine handoff on the way (x/crypto's read
// loop → its mux → the channel's reader → the local socket) wakes another
// thread to run it, and idle threads spin and park: measured on a 2-core VM, one P cut
// the launcher's CPU per execute round trip from 0.97 to 0.57 ms, sshd's
// from 0.48 to 0.34 ms (more messages share a packet), and the median
// round trip by 0.3 ms (5.8 → 5.5 ms); stream throughput did not change
// beyond the noise.
// On a laptop with many cores the default spreads the work even thinner.
func tuneRuntime(getenv func(string) string) {
	if n := procs(getenv); n > 0 {
		runtime.GOMAXPROCS(n)
	}
}

// procs is the GOMAXPROCS the launcher sets: 1, or 0 to leave the
// runtime's choice (the user's GOMAXPROCS) alone.
func procs(getenv func(string) string) int {
	if getenv("GOMAXPROCS") != "" {
		return 0
	}
	return 1
}
