package sshconf

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// maxIncludeDepth is OpenSSH's READCONF_MAX_DEPTH.
const maxIncludeDepth = 16

// builtinFix is the way out of anything the built-in reader cannot do.
const builtinFix = "install OpenSSH's ssh so gopyk can use `ssh -G`, or set GOPYK_SSH_CONFIG_BACKEND=openssh"

// builtinBackend evaluates ssh_config files without OpenSSH: the files are
// parsed with kevinburke/ssh_config (which lays out the blocks and their
// lines) and evaluated here with OpenSSH's rules — first value wins, Host
// patterns against the alias, Match host/originalhost/all, Include in place,
// % tokens, ~ and ${VAR}, and OpenSSH 9.x defaults. Anything it cannot
// evaluate is an error naming file:line, never silently skipped.
type builtinBackend struct {
	configFile string // ssh -F; "" = the user's file, then the system file
	systemFile string
	local      localEnv
}

func newBuiltin(configFile string, local localEnv) backend {
	return &builtinBackend{configFile: configFile, systemFile: "/etc/ssh/ssh_config", local: local}
}

func (b *builtinBackend) name() string { return "builtin" }

// evalState is what ssh's readconf keeps while it reads: the options set so
// far and whether the current block applies.
type evalState struct {
	hostArg string // the name given to ssh; Host patterns match against it
	opts    map[string][]string
	// ProxyJump and ProxyCommand: the first of the two wins. What ssh 9.2
	// does with "none" (tested): ProxyJump none blocks a later ProxyJump but
	// not a later ProxyCommand; ProxyCommand none blocks both.
	jumpSet, jumpNone, cmdSet bool
	// canonAt is the file:line of the CanonicalizeHostname that took
	// effect, for the error if the host needs canonicalizing.
	canonAt string
}

func (b *builtinBackend) lookup(ctx context.Context, host, user string, port int, jump string) (map[string][]string, error) {
	st := &evalState{hostArg: host, opts: map[string][]string{}}
	// -l and -p are command-line options: they are set before any file is
	// read, so they win over the config.
	if user != "" {
		st.opts["user"] = []string{user}
	}
	if port > 0 {
		st.opts["port"] = []string{strconv.Itoa(port)}
	}
	if jump != "" {
		st.opts["proxyjump"] = []string{jump}
		st.jumpSet = true
	}
	switch b.configFile {
	case "none": // ssh -F none: no file at all, only the defaults
	case "":
		userFile := filepath.Join(b.local.home, ".ssh", "config")
		if err := b.readFile(st, userFile, true, true, true, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if err := b.readFile(st, b.systemFile, false, false, true, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	default:
		if err := b.readFile(st, b.configFile, true, false, true, 0); err != nil {
			return nil, err
		}
	}
	return b.finish(st)
}

// header is a Host or Match line: it opens the block of lines under it.
type header struct {
	line    int
	keyword string // "host" or "match"
	args    []string
}

// readFile reads one config file. userConf picks where relative Include
// paths point (~/.ssh or /etc/ssh); checkPerm refuses files others can
// write, as ssh does for the user's own files; active is whether the
// Include line that brought the file in was in a matching block.
func (b *builtinBackend) readFile(st *evalState, path string, userConf, checkPerm, active bool, depth int) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("%s: Include nested deeper than %d (a loop?); fix the Include lines", path, maxIncludeDepth)
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		// A device or FIFO would block or never end.
		return fmt.Errorf("ssh config %s is not a regular file; fix the Include or -F path", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return fmt.Errorf("read ssh config: %w", err)
	}
	if checkPerm {
		if err := checkConfigPerm(path); err != nil {
			return err
		}
	}
	lines := strings.Split(string(data), "\n")
	masked, headers, includes, err := maskDirectives(path, lines)
	if err != nil {
		return err
	}
	cfg, err := ssh_config.DecodeBytes([]byte(strings.Join(masked, "\n")))
	if err != nil {
		return fmt.Errorf("%s: %v; fix the file or %s", path, err, builtinFix)
	}
	if len(cfg.Hosts) != len(headers)+1 {
		return fmt.Errorf("%s: found %d Host/Match blocks, the parser %d; %s", path, len(headers), len(cfg.Hosts)-1, builtinFix)
	}
	for i, h := range cfg.Hosts {
		blockActive := active
		if i > 0 {
			hd := headers[i-1]
			if blockActive {
				ok, err := st.matches(hd)
				if err != nil {
					return fmt.Errorf("%s:%d: %w; %s", path, hd.line, err, builtinFix)
				}
				blockActive = ok
			}
		}
		for _, n := range h.Nodes {
			line := n.Pos().Line
			if inc, ok := includes[line]; ok {
				if err := b.include(st, path, line, inc, userConf, blockActive, depth); err != nil {
					return err
				}
				continue
			}
			if _, ok := n.(*ssh_config.KV); !ok || line < 1 || line > len(lines) {
				continue
			}
			kw, rest := splitKeyword(lines[line-1])
			if kw == "" {
				continue
			}
			key := strings.ToLower(kw)
			// As ssh: whether or not the block applies.
			if st.badOption(key) {
				return fmt.Errorf("%s:%d: Bad configuration option: %s; fix its spelling, or name it in IgnoreUnknown", path, line, key)
			}
			if key == "canonicalizehostname" && blockActive && st.opts[key] == nil {
				st.canonAt = fmt.Sprintf("%s:%d", path, line)
			}
			if err := st.apply(key, rest, blockActive); err != nil {
				return fmt.Errorf("%s:%d: %w", path, line, err)
			}
		}
	}
	return nil
}

// maskDirectives finds the Host, Match and Include lines, which are
// evaluated here, and hands kevinburke neutral stand-ins on the same line
// numbers: a Host line per block and a comment per Include. Its own Match
// support (all/host only, whole-file parse errors otherwise) and its Include
// (relative to its own idea of home) then never come into play. A Match
// criterion ssh does not know is an error here, as in ssh; one this reader
// cannot evaluate is an error only for hosts whose evaluation needs it.
func maskDirectives(path string, lines []string) (masked []string, headers []header, includes map[int][]string, err error) {
	includes = map[int][]string{}
	masked = make([]string, len(lines))
	for i, l := range lines {
		masked[i] = l
		kw, rest := splitKeyword(l)
		switch strings.ToLower(kw) {
		case "host", "match", "include":
		default:
			continue
		}
		args, err := argvSplit(rest)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s:%d: %v", path, i+1, err)
		}
		if len(args) == 0 {
			return nil, nil, nil, fmt.Errorf("%s:%d: no argument after keyword %q", path, i+1, kw)
		}
		switch kw := strings.ToLower(kw); kw {
		case "include":
			includes[i+1] = args
			masked[i] = "# gopyk-include"
		default:
			if kw == "match" {
				if err := checkMatch(args); err != nil {
					return nil, nil, nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
				}
			}
			headers = append(headers, header{line: i + 1, keyword: kw, args: args})
			masked[i] = fmt.Sprintf("Host gopyk-block-%d", len(headers))
		}
	}
	return masked, headers, includes, nil
}

// Match criteria: those the built-in reader evaluates exactly as ssh does,
// and those ssh knows that need ssh itself (exec runs a command; user and
// localuser, canonical and final, tagged and localnetwork depend on state
// this reader does not keep). The value says whether it takes an argument.
var (
	matchEvaluated = map[string]bool{"all": false, "host": true, "originalhost": true}
	matchNeedsSSH  = map[string]bool{"exec": true, "user": true, "localuser": true, "canonical": false,
		"final": false, "tagged": true, "localnetwork": true}
)

// checkMatch is ssh's syntax check of a Match line.
func checkMatch(args []string) error {
	for i := 0; i < len(args); i++ {
		c := strings.ToLower(strings.TrimPrefix(args[i], "!"))
		arg, known := matchEvaluated[c]
		if !known {
			if arg, known = matchNeedsSSH[c]; !known {
				return fmt.Errorf("Unsupported Match attribute %s", c)
			}
		}
		if c == "all" && i == 0 && len(args) != 1 {
			// ssh allows "all" alone or after other criteria, not before.
			return errors.New("'all' cannot be combined with other Match attributes")
		}
		if arg {
			if i+1 >= len(args) {
				return fmt.Errorf("Match %s needs a pattern", c)
			}
			i++
		}
	}
	return nil
}

// matches evaluates a Host or Match line against the state so far. A Match
// with a criterion that needs ssh is an error only when every criterion
// this reader can evaluate holds: otherwise the block does not apply
// whatever the others say, as in ssh, which skips exec after a failed
// criterion.
func (st *evalState) matches(h header) (bool, error) {
	if h.keyword == "host" {
		// Host: case-sensitive against the alias; any negated hit vetoes.
		hit := false
		for _, p := range h.args {
			if neg := strings.HasPrefix(p, "!"); neg {
				if matchPattern(st.hostArg, p[1:]) {
					return false, nil
				}
			} else if matchPattern(st.hostArg, p) {
				hit = true
			}
		}
		return hit, nil
	}
	// Match: every criterion must hold. "host" sees the HostName set so far
	// (with %h expanded), "originalhost" the alias; both ignore case.
	needs := ""
	for i := 0; i < len(h.args); i++ {
		c := strings.ToLower(h.args[i])
		neg := strings.HasPrefix(c, "!")
		c = strings.TrimPrefix(c, "!")
		var ok bool
		switch c {
		case "all":
			ok = true
		case "host":
			i++
			ok = matchPatternList(st.currentHost(), h.args[i], true) == 1
		case "originalhost":
			i++
			ok = matchPatternList(st.hostArg, h.args[i], true) == 1
		default:
			if needs == "" {
				needs = c
			}
			if matchNeedsSSH[c] {
				i++
			}
			continue
		}
		if ok == neg {
			return false, nil
		}
	}
	if needs != "" {
		return false, fmt.Errorf("Match %s is not supported by the built-in ssh config reader (host %s needs it)", needs, st.hostArg)
	}
	return true, nil
}

func (st *evalState) currentHost() string {
	if hn := st.opts["hostname"]; len(hn) > 0 {
		if h, err := expand(hn[0], Tokens{HostName: st.hostArg}, "h", false, nil); err == nil {
			return h
		}
	}
	return st.hostArg
}

// include reads the files an Include line names, in place: relative paths
// are under ~/.ssh (user files) or /etc/ssh (system files), globs sorted.
func (b *builtinBackend) include(st *evalState, from string, line int, pats []string, userConf, active bool, depth int) error {
	for _, p := range pats {
		if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "~") {
			if userConf {
				p = "~/.ssh/" + p
			} else {
				p = "/etc/ssh/" + p
			}
		}
		// ssh globs Include paths with GLOB_TILDE, and glob(3) takes ~ from
		// $HOME (unlike the rest of ssh, which uses the passwd entry).
		home := b.local.home
		if h, ok := b.local.lookupEnv("HOME"); ok && h != "" {
			home = h
		}
		p, err := expandTilde(p, home)
		if err != nil {
			return fmt.Errorf("%s:%d: Include %w", from, line, err)
		}
		files, err := filepath.Glob(p)
		if err != nil {
			return fmt.Errorf("%s:%d: Include %q: %w", from, line, p, err)
		}
		for _, f := range files {
			err := b.readFile(st, f, userConf, userConf, active, depth+1)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// multiKeys accumulate across lines, in order; every other key keeps the
// first value seen, as in ssh.
var multiKeys = map[string]bool{
	"identityfile": true, "certificatefile": true, "localforward": true,
	"remoteforward": true, "dynamicforward": true, "sendenv": true,
}

// singleArg keys take exactly one argument; more is ssh's "garbage at end
// of line" error.
var singleArg = map[string]bool{
	"hostname": true, "user": true, "port": true, "identityfile": true, "certificatefile": true,
	"identityagent": true, "hostkeyalias": true, "stricthostkeychecking": true,
	"hashknownhosts": true, "hostkeyalgorithms": true, "connecttimeout": true,
	"serveraliveinterval": true, "serveralivecountmax": true, "batchmode": true,
	"identitiesonly": true, "pubkeyauthentication": true, "passwordauthentication": true,
	"kbdinteractiveauthentication": true, "proxyjump": true, "canonicalizehostname": true,
}

// rawRest keys take the rest of the line verbatim (ssh's parse_command).
var rawRest = map[string]bool{
	"proxycommand": true, "localcommand": true, "remotecommand": true, "knownhostscommand": true,
}

func (st *evalState) apply(key, rest string, active bool) error {
	if rest == "" {
		return fmt.Errorf("no argument after keyword %q", key)
	}
	var val string
	if rawRest[key] {
		val = rest
	} else {
		args, err := argvSplit(rest)
		if err != nil {
			return err
		}
		if len(args) == 0 {
			return fmt.Errorf("no argument after keyword %q", key)
		}
		if singleArg[key] && len(args) > 1 {
			return fmt.Errorf("%s: garbage at end of line %q", key, strings.Join(args[1:], " "))
		}
		val = strings.Join(args, " ")
		if err := validate(key, val); err != nil {
			return err
		}
	}
	if !active {
		return nil
	}
	switch key {
	case "proxyjump":
		if st.jumpSet || st.cmdSet {
			return nil
		}
		st.jumpSet, st.jumpNone = true, strings.EqualFold(val, "none")
	case "proxycommand":
		if st.cmdSet || st.jumpSet && !st.jumpNone {
			return nil
		}
		st.cmdSet = true
	}
	if multiKeys[key] {
		for _, v := range st.opts[key] {
			if v == val { // ssh drops exact duplicates
				return nil
			}
		}
		st.opts[key] = append(st.opts[key], val)
		return nil
	}
	if _, set := st.opts[key]; !set {
		st.opts[key] = []string{val}
	}
	return nil
}

// validate rejects what ssh itself rejects for the keys gopyk uses, so a bad
// file fails here as it would in ssh instead of at dial time.
func validate(key, val string) error {
	switch key {
	case "port":
		if _, err := lookupPort(val); err != nil {
			return err
		}
	case "connecttimeout", "serveraliveinterval":
		if val != "none" {
			if _, err := parseSSHTime(val); err != nil {
				return fmt.Errorf("%s %q: %w", key, val, err)
			}
		}
	case "serveralivecountmax":
		if n, err := strconv.Atoi(val); err != nil || n < 0 {
			return fmt.Errorf("%s %q: not a number", key, val)
		}
	case "stricthostkeychecking":
		if _, err := strictHostKeyChecking(val); err != nil {
			return err
		}
	case "proxyjump":
		if _, err := ParseJump(val); err != nil {
			return err
		}
	case "hashknownhosts", "batchmode", "identitiesonly", "passwordauthentication", "kbdinteractiveauthentication":
		switch strings.ToLower(val) {
		case "yes", "no", "true", "false":
		default:
			return fmt.Errorf("%s %q: want yes or no", key, val)
		}
	}
	return nil
}

func lookupPort(s string) (int, error) {
	p, err := net.LookupPort("tcp", s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return p, nil
}
