package sshconf

import (
	"errors"
	"strings"
)

// splitKeyword separates a config line into its keyword and the rest, the
// way OpenSSH's strdelim does: the keyword ends at whitespace, a quote or one
// '=', and whitespace plus at most one '=' before the arguments are skipped.
// It returns "" for blank and comment lines.
func splitKeyword(line string) (keyword, rest string) {
	line = strings.TrimRight(line, " \t\r\n\f")
	line = strings.TrimLeft(line, " \t")
	if line == "" || line[0] == '#' {
		return "", ""
	}
	end := strings.IndexAny(line, " \t=\"")
	if end < 0 {
		return line, ""
	}
	keyword, rest = line[:end], line[end:]
	sawEquals := false
	for rest != "" {
		switch {
		case rest[0] == ' ' || rest[0] == '\t':
			rest = rest[1:]
		case rest[0] == '=' && !sawEquals:
			sawEquals = true
			rest = rest[1:]
		default:
			return keyword, rest
		}
	}
	return keyword, rest
}

var errQuotes = errors.New("invalid quotes")

// argvSplit is OpenSSH's argv_split(s, …, terminate_on_comment=1): words
// split on blanks, "…" and '…' quoting, backslash escapes of quotes,
// backslash and (outside quotes) space, and a '#' at a word start ends the line.
func argvSplit(s string) ([]string, error) {
	var out []string
	i := 0
	for i < len(s) {
		if s[i] == ' ' || s[i] == '\t' {
			i++
			continue
		}
		if s[i] == '#' {
			break
		}
		var arg strings.Builder
		var quote byte
		for ; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '\\' && i+1 < len(s) && (s[i+1] == '\'' || s[i+1] == '"' || s[i+1] == '\\' || quote == 0 && s[i+1] == ' '):
				i++
				arg.WriteByte(s[i])
			case quote == 0 && (c == ' ' || c == '\t'):
				goto done
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
			case quote != 0 && c == quote:
				quote = 0
			default:
				arg.WriteByte(c)
			}
		}
		if quote != 0 {
			return nil, errQuotes
		}
	done:
		out = append(out, arg.String())
	}
	return out, nil
}

// matchPattern is OpenSSH's match_pattern: '*' is any run, '?' exactly one
// character, everything else literal.
func matchPattern(s, pat string) bool {
	for {
		if pat == "" {
			return s == ""
		}
		switch pat[0] {
		case '*':
			for len(pat) > 0 && pat[0] == '*' {
				pat = pat[1:]
			}
			if pat == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if matchPattern(s[i:], pat) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != pat[0] {
				return false
			}
		}
		s, pat = s[1:], pat[1:]
	}
}

// matchPatternList is match_pattern_list: a comma-separated list whose
// "!" entries veto. It returns 1 on a positive match, -1 on a negated one,
// 0 otherwise. With lower set both sides compare case-insensitively.
func matchPatternList(s, list string, lower bool) int {
	if lower {
		s, list = strings.ToLower(s), strings.ToLower(list)
	}
	got := 0
	for _, p := range strings.Split(list, ",") {
		neg := strings.HasPrefix(p, "!")
		if neg {
			p = p[1:]
		}
		if matchPattern(s, p) {
			if neg {
				return -1
			}
			got = 1
		}
	}
	return got
}
