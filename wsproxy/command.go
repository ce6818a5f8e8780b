package wsproxy

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// ParseCommand recognises a ProxyCommand (tokens already expanded) that runs
// `gopyk ws-proxy`, so a caller can Dial in-process instead of starting a
// process. It returns false for anything it cannot read exactly as the shell
// would (variables, globs, pipes, …); run such commands through the shell.
// A leading "~/" in a word is the home directory, as in the shell.
func ParseCommand(proxyCommand string) (Options, bool) {
	words, ok := shellWords(proxyCommand)
	if !ok {
		return Options{}, false
	}
	if len(words) > 0 && words[0] == "exec" {
		words = words[1:]
	}
	if len(words) < 2 || !isGopyk(words[0]) {
		return Options{}, false
	}
	words = words[1:]
	// -v flags may come anywhere (urfave/cli inherits them); logging is
	// the caller's, so they are dropped.
	kept := words[:0:0]
	for _, w := range words {
		if w != "--verbose" && !(strings.HasPrefix(w, "-") && strings.Trim(w, "-v") == "" && strings.Count(w, "-") == 1) {
			kept = append(kept, w)
		}
	}
	words = kept
	if len(words) == 0 || words[0] != "ws-proxy" {
		return Options{}, false
	}
	var o Options
	fs := flag.NewFlagSet("ws-proxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.TokenFile, "token-file", "", "")
	fs.StringVar(&o.TokenEnv, "token-env", "", "")
	fs.StringVar(&o.CookieFile, "cookie-file", "", "")
	fs.StringVar(&o.HeaderFile, "header-file", "", "")
	fs.StringVar(&o.CACert, "cacert", "", "")
	fs.BoolVar(&o.Insecure, "insecure", false, "")
	fs.DurationVar(&o.PingInterval, "ping-interval", DefaultPingInterval, "")
	fs.DurationVar(&o.ConnectTimeout, "connect-timeout", DefaultConnectTimeout, "")
	// urfave/cli accepts flags after the URL too: parse until nothing is left.
	args := words[1:]
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return Options{}, false
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 || o.ConnectTimeout <= 0 {
		return Options{}, false
	}
	o.URL = pos[0]
	if o.PingInterval == 0 {
		o.PingInterval = -1 // the flag's 0 means off
	}
	return o, true
}

// isGopyk reports whether a command's first word runs gopyk (gopyk.exe on Windows).
func isGopyk(w string) bool {
	b := filepath.Base(w)
	if runtime.GOOS == "windows" {
		b = strings.TrimSuffix(strings.ToLower(b), ".exe")
	}
	return b == "gopyk"
}

// literalBackslash: Windows paths are full of backslashes, and Windows
// OpenSSH hands ProxyCommand to CreateProcess, which does not treat them as
// escapes.
var literalBackslash = runtime.GOOS == "windows"

// shellWords splits s as sh would when s holds only plain words, quotes and
// backslashes; ok is false if the shell would do more (expansions, operators).
func shellWords(s string) (words []string, ok bool) {
	var (
		cur     strings.Builder
		inWord  bool
		quote   rune
		escaped bool
	)
	home, _ := os.UserHomeDir()
	flush := func() {
		if inWord {
			words = append(words, cur.String())
		}
		cur.Reset()
		inWord = false
	}
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				if !literalBackslash {
					return nil, false
				}
				cur.WriteRune(r)
			case '$', '`':
				return nil, false
			default:
				cur.WriteRune(r)
			}
		case r == '\\' && !literalBackslash:
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			flush()
		case strings.ContainsRune("$`;|&<>()*?[]{}#!=~", r):
			// '=' only matters for "--flag=~/x" tilde forms and assignments;
			// plain "--flag=value" stays supported below.
			switch {
			case r == '~' && !inWord && home != "" && i+1 < len(rs) && rs[i+1] == '/':
				cur.WriteString(home)
				inWord = true
			case r == '=' && inWord && strings.HasPrefix(cur.String(), "-") && (i+1 >= len(rs) || rs[i+1] != '~'):
				cur.WriteRune(r)
			default:
				return nil, false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, false
	}
	flush()
	return words, true
}
