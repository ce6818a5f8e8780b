package testbed

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// proc is one row of /proc: enough to walk a process tree and tell zombies
// apart (PID 1 on the test VMs reaps lazily, so kill -0 lies about zombies).
type proc struct {
	pid, ppid int
	comm      string
	state     byte
}

func readProc(pid int) (proc, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return proc{}, false
	}
	// comm may hold spaces and parentheses: it ends at the last ')'.
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < 0 || end+4 > len(s) {
		return proc{}, false
	}
	f := strings.Fields(s[end+2:])
	if len(f) < 2 {
		return proc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return proc{pid: pid, ppid: ppid, comm: s[open+1 : end], state: f[0][0]}, true
}

func allProcs() []proc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			out = append(out, p)
		}
	}
	return out
}

// descendants lists every live process below root (not root itself).
func descendants(root int) []proc {
	all := allProcs()
	kids := map[int][]proc{}
	for _, p := range all {
		kids[p.ppid] = append(kids[p.ppid], p)
	}
	var out []proc
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, k := range kids[pid] {
			out = append(out, k)
			queue = append(queue, k.pid)
		}
	}
	return out
}

// tagged lists processes whose environment holds tag (KEY=VALUE). sshd's
// SetEnv puts the tag into every session, so daemonised session processes
// that left the sshd tree are still found.
func tagged(tag string) []int {
	var out []int
	needle := []byte(tag)
	for _, p := range allProcs() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if bytes.Equal(kv, needle) {
				out = append(out, p.pid)
				break
			}
		}
	}
	return out
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	p, ok := readProc(pid)
	return ok && p.state != 'Z' && p.state != 'X'
}
