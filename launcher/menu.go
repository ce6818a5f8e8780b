package launcher

import (
	"fmt"
	"io"
	"strings"
)

const (
	menuText   = "Pick an action and press Enter: Y = shutdown (default), i = interrupt, l = leave (kernel keeps running), r = restart, n = nothing\n"
	menuPrompt = "Action? [Y/i/l/r/n]: "
)

// runMenu is the Ctrl+D menu: it discards what is typed, and on end of file
// (Ctrl+D at the start of a line) asks for an action, hands it to send and
// re-arms. It returns when r fails (closed) or send refuses.
func runMenu(r io.Reader, out io.Writer, send func(request) bool) {
	buf := make([]byte, 512)
	for {
		_, err := r.Read(buf)
		if err == nil {
			continue // typed input is not ours to act on
		}
		if err != io.EOF {
			return
		}
		fmt.Fprint(out, "\n"+menuText+menuPrompt)
		line, err := readLine(r, buf)
		if err != nil && err != io.EOF {
			return
		}
		req, ok := menuChoice(line)
		if !ok {
			fmt.Fprintf(out, "Unknown answer %q: no action taken, resuming\n", strings.TrimSpace(line))
			continue
		}
		if req.act == actNothing {
			fmt.Fprintln(out, "No action taken, resuming")
			continue
		}
		if !send(req) {
			return
		}
	}
}

// readLine reads up to a newline; a TTY in canonical mode hands over whole
// lines, so one read is the usual case. End of file ends the line, as
// Python's readline does.
func readLine(r io.Reader, buf []byte) (string, error) {
	var line []byte
	for {
		n, err := r.Read(buf)
		line = append(line, buf[:n]...)
		if i := strings.IndexByte(string(line), '\n'); i >= 0 {
			return string(line[:i]), nil
		}
		if err != nil {
			return string(line), err
		}
	}
}

// menuChoice maps an answer to a request; ok is false for an answer that is
// not on the menu.
func menuChoice(line string) (request, bool) {
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "", "y", "yes":
		return request{act: actForceShutdown, why: "Ctrl+D"}, true
	case "i":
		return request{act: actInterrupt, why: "Ctrl+D"}, true
	case "l":
		return request{act: actLeave, why: "Ctrl+D"}, true
	case "r":
		return request{act: actRestart, why: "Ctrl+D"}, true
	case "n", "no":
		return request{act: actNothing, why: "Ctrl+D"}, true
	}
	return request{}, false
}
