//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	bin        string
	baseline   string
	out        string
	launches   int
	roundTrips int
	interrupts int
	mb         int
	tpRuns     int
	idle       time.Duration
	cycles     int
	scale      int
	oneWay     time.Duration
	sshdConfig stringList
	only       string
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ", ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory holding the gopyk and gopyk-kernel binaries (make build)")
	flag.StringVar(&o.baseline, "baseline-bin", "", "`dir` holding gopyk and gopyk-kernel of another build (e.g. main's) whose cold and repeated launches run interleaved with these")
	flag.StringVar(&o.out, "out", "bench/results", "directory the markdown table is written to")
	flag.IntVar(&o.launches, "n", 10, "launches per launch series (cold, repeated, local, and each at 100 ms RTT)")
	flag.IntVar(&o.roundTrips, "rt", 200, "execute round trips per client")
	flag.IntVar(&o.interrupts, "interrupts", 10, "interrupts per kernel (local, and gopyk at 100 ms RTT)")
	flag.IntVar(&o.mb, "mb", 100, "MiB of stream output for the throughput cell")
	flag.IntVar(&o.tpRuns, "tp-runs", 3, "throughput runs per kernel (median reported)")
	flag.DurationVar(&o.idle, "idle", 60*time.Second, "idle window for CPU and process counting")
	flag.IntVar(&o.cycles, "cycles", 10, "launch/shutdown cycles for the goroutine and fd check")
	flag.IntVar(&o.scale, "scale", 20, "kernels launched at once")
	flag.DurationVar(&o.oneWay, "latency", 50*time.Millisecond, "toxiproxy latency each way for the slow-link figures")
	flag.Var(&o.sshdConfig, "sshd-config", "extra sshd_config `LINE` for the bench sshd (repeatable), e.g. \"MaxStartups 100\" (default: sshd's defaults)")
	flag.StringVar(&o.only, "only", "", "comma-separated sections to run (cycles, launch, kernels, flood, scale, slow, ws); default all")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, out, logw io.Writer) error {
	logf := func(format string, a ...any) {
		fmt.Fprintf(logw, "[%s] "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, a...)...)
	}
	r := &results{opts: o, start: time.Now(), loadStart: loadavg(), jupyterClient: jupyterClientVersion(ctx)}
	b, err := newBed(ctx, o.bin, o.baseline, o.sshdConfig, o.oneWay)
	if err != nil {
		return err
	}
	defer b.close()
	logf("sshd %s (pid %d), toxiproxy on port %d (+%v each way)", b.sshd.Addr, b.sshd.PID(), b.slow.Port, o.oneWay)

	sections := []struct {
		key, name string
		f         func(context.Context, *bed, *results) error
	}{
		{"cycles", "goroutines and fds over launch/shutdown cycles", benchCycles},
		{"launch", "launches on loopback", benchLaunches},
		{"kernels", "round trips (with OpenSSH forwards), throughput and footprint", benchKernels},
		{"flood", "200 MiB in 64 KiB writes over a 20 MB/s link", benchFlood},
		{"scale", "scale", benchScale},
		{"slow", "100 ms RTT", benchSlow},
		{"ws", "through a WebSocket gateway that leaves Nagle on", benchWS},
	}
	only := map[string]bool{}
	for _, k := range strings.Split(o.only, ",") {
		if k = strings.TrimSpace(k); k != "" {
			only[k] = true
		}
	}
	for _, s := range sections {
		if ctx.Err() != nil {
			break
		}
		if len(only) > 0 && !only[s.key] {
			continue
		}
		logf("%s …", s.name)
		t := time.Now()
		if err := s.f(ctx, b, r); err != nil {
			r.errs = append(r.errs, fmt.Sprintf("%s: %s", s.name, strings.ReplaceAll(err.Error(), "\n", "; ")))
			logf("%s failed: %v", s.name, err)
		}
		logf("%s done in %v", s.name, time.Since(t).Round(100*time.Millisecond))
	}
	if err := b.waitNoRemote(15 * time.Second); err != nil {
		r.errs = append(r.errs, "clean-up: "+err.Error())
	}
	r.end, r.loadEnd = time.Now(), loadavg()
	table := r.markdown()
	fmt.Fprint(out, table)
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	name := filepath.Join(o.out, "bench-"+r.start.UTC().Format("20060102-150405")+".md")
	for _, p := range []string{name, filepath.Join(o.out, "latest.md")} {
		if err := os.WriteFile(p, []byte(table), 0o644); err != nil {
			return err
		}
	}
	logf("table written to %s", name)
	if len(r.errs) > 0 {
		return fmt.Errorf("%d section(s) could not be measured (see the table's notes)", len(r.errs))
	}
	return ctx.Err()
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := string(b)
	if len(f) > 14 {
		f = f[:14]
	}
	return f
}

func jupyterClientVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", "import jupyter_client; print(jupyter_client.__version__)").Output()
	if err != nil {
		return "(version unknown)"
	}
	return strings.TrimSpace(string(out))
}
