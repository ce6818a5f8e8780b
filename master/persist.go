package master

import (
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/sshconf"
)

// Persist is how long the master for a spec's host stays once unused:
// the spec's master_persist; else the host's ControlPersist when it gives
// a time (or "yes": until stopped, -1); else DefaultMasterPersist. ssh -G
// says "no" for a host that sets nothing, so "no" is the default too.
func Persist(g kernelspec.Gopyk, t *sshconf.Settings) time.Duration {
	if g.MasterPersist > 0 {
		return time.Duration(g.MasterPersist) * time.Second
	}
	if t != nil {
		if v := t.Raw["controlpersist"]; len(v) > 0 {
			switch s := strings.ToLower(strings.TrimSpace(v[0])); s {
			case "yes", "true":
				return -1
			case "", "no", "false", "0":
			default:
				if d, ok := sshTime(s); ok && d > 0 {
					return d
				}
			}
		}
	}
	return kernelspec.DefaultMasterPersist * time.Second
}

// sshTime parses ssh_config's time format: seconds, or numbers with s, m,
// h, d or w after each (1h30m).
func sshTime(s string) (time.Duration, bool) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, true
	}
	var total time.Duration
	num := ""
	for _, r := range s {
		if unicode.IsDigit(r) {
			num += string(r)
			continue
		}
		n, err := strconv.Atoi(num)
		if err != nil {
			return 0, false
		}
		unit := map[rune]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[unicode.ToLower(r)]
		if unit == 0 {
			return 0, false
		}
		total += time.Duration(n) * unit
		num = ""
	}
	if num != "" {
		n, err := strconv.Atoi(num)
		if err != nil {
			return 0, false
		}
		total += time.Duration(n) * time.Second
	}
	return total, true
}

// Enabled says whether a spec's kernels go through the host's master:
// yes unless the spec says master off, on systems that have masters.
func Enabled(g kernelspec.Gopyk) bool { return supported && g.Master != "off" }
