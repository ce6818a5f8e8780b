package launcher

import "strings"

// ownFlags are gopyk-kernel's flags and aliases (see mainWith), with whether
// each takes a value. splitKernelArgs needs them to find where its own
// arguments end.
var ownFlags = map[string]bool{
	"kernel": true, "k": true,
	"connection-file": true, "c": true,
	"persistent": false, "p": false,
	"persistent-file": true, "persistent_file": true, "f": true,
	"existing": true, "e": true,
	"leave": false, "l": false,
	"verbose": false, "v": false,
	"version": false,
	"help":    false, "h": false,
}

// splitKernelArgs separates gopyk-kernel's own arguments from those meant
// for the remote kernel. jupyter_client appends start_kernel(extra_arguments)
// and nbclient its --HistoryManager.hist_file=:memory: after the spec's argv,
// so everything from the first argument that is not one of our flags (or
// after "--") belongs to the kernel, as it would for a local ipykernel.
// A bare word is left to the command-line parser, which rejects it.
func splitKernelArgs(args []string) (own, kernel []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return args[:i], args[i+1:]
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, hasValue := strings.TrimLeft(a, "-"), false
		if j := strings.IndexByte(name, '='); j >= 0 {
			name, hasValue = name[:j], true
		}
		takes, ok := ownFlags[name]
		if !ok && !strings.HasPrefix(a, "--") && shortBools(name) {
			continue // -vv, -pv
		}
		if !ok {
			return args[:i], args[i:]
		}
		if takes && !hasValue {
			i++ // its value, whatever it looks like
		}
	}
	return args, nil
}

// shortBools: s is a run of our one-letter boolean flags (-vvv).
func shortBools(s string) bool {
	if len(s) < 2 {
		return false
	}
	for _, r := range s {
		if takes, ok := ownFlags[string(r)]; !ok || takes {
			return false
		}
	}
	return true
}
