//go:build linux

package remote

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func supLog(r *Reply) string {
	b, _ := os.ReadFile(filepath.Join(r.RunDir, "supervisor.log"))
	return string(b)
}

const abandonedLine = "its gopyk-kernel is gone (killed), not the network; shutting down in 4s"

// A lease closed while its pings were on time was closed by its holder (a
// killed gopyk-kernel): the kernel stops within seconds, not after the grace
// period, unless a lease comes back within the window (a reconnect). A lease
// that went silent first (a dead link, then sshd giving up) or never asked
// for pings keeps the grace period.
func TestAbandonedLease(t *testing.T) {
	t.Parallel()
	b := newBed(t)

	t.Run("closed on time", func(t *testing.T) {
		r := b.launch(Params{Grace: time.Hour})
		lease, err := ctl(r).Lease(tctx(t, 5*time.Second), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		lease.Close()
		waitFor(t, "the abandoned-lease log line", 5*time.Second, func() bool { return strings.Contains(supLog(r), abandonedLine) })
		waitGone(t, 15*time.Second, r.KernelPID, r.SupervisorPID)
	})

	t.Run("reconnect in time", func(t *testing.T) {
		r := b.launch(Params{Grace: time.Hour})
		lease, err := ctl(r).Lease(tctx(t, 5*time.Second), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		lease.Close()
		waitFor(t, "the abandoned-lease log line", 5*time.Second, func() bool { return strings.Contains(supLog(r), abandonedLine) })
		again, err := ctl(r).Lease(tctx(t, 5*time.Second), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		time.Sleep(5 * time.Second) // past the 4 s window: nothing may happen
		if !alive(r.KernelPID) {
			t.Fatal("kernel stopped although a lease came back within the window")
		}
	})

	for _, tc := range []struct {
		name, lease string
		silence     time.Duration
	}{
		// Pings due every second, none sent for 2.2 s: stale (after 2 s), not
		// yet dropped by the ping timeout (3 s); either way a grace period.
		{"silent first", `{"op":"lease","ping_timeout":3}`, 2200 * time.Millisecond},
		{"no pings asked", `{"op":"lease"}`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.launch(Params{Grace: time.Hour})
			conn, err := UnixDialer(r.Control)(tctx(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write([]byte(tc.lease + "\n")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "lease opened", 5*time.Second, func() bool { return strings.Contains(supLog(r), "lease opened") })
			time.Sleep(tc.silence) // the silence is the condition under test
			conn.(*net.UnixConn).Close()
			waitFor(t, "the grace log line", 5*time.Second, func() bool { return strings.Contains(supLog(r), "shutting down in 3600s") })
			if strings.Contains(supLog(r), "(killed)") {
				t.Fatalf("a stale or ping-less lease taken for a killed launcher:\n%s", supLog(r))
			}
			if !alive(r.KernelPID) {
				t.Fatal("kernel gone")
			}
		})
	}
}
