package manage

import (
	"bytes"
	"context"
	"io"
	"path"
	"regexp"
	"strings"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/transport"
)

// moduleName is what `python -m` accepts and what may go unquoted into
// `import …`.
var moduleName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// kernelModule returns the interpreter and module of a python kernel's argv
// ("/venv/bin/python -m ipykernel_launcher -f …"), or ok false for any other
// kind of kernel.
func kernelModule(argv []string) (python, module string, ok bool) {
	if len(argv) < 3 || !strings.HasPrefix(path.Base(argv[0]), "python") {
		return "", "", false
	}
	for i := 1; i+1 < len(argv); i++ {
		a := argv[i]
		if a == "-m" {
			if moduleName.MatchString(argv[i+1]) {
				return argv[0], argv[i+1], true
			}
			return "", "", false
		}
		if !strings.HasPrefix(a, "-") { // a script: not a -m kernel
			return "", "", false
		}
	}
	return "", "", false
}

// importCheck has the remote kernel's own interpreter import the module its
// argv runs, after the spec's pre-command, in one exec session: a venv whose
// kernel spec is found but which lacks ipykernel passes every other check
// and fails only at launch. ok is false when argv is not a python -m kernel.
func importCheck(ctx context.Context, c transport.Conn, g kernelspec.Gopyk, argv []string) (Check, bool) {
	python, module, ok := kernelModule(argv)
	if !ok {
		return Check{}, false
	}
	chk := Check{Label: "Remote Kernel Module"}
	sess, err := c.NewSession()
	if err != nil {
		chk.Status, chk.Message = StatusError, "open an exec session: "+oneLine(err.Error())
		return chk, true
	}
	defer sess.Close()
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	// __import__(…), not `import …`: one word, so that a wrapper script
	// named python… that re-splits its arguments passes it whole.
	cmd := "exec " + shQuote(python) + " -c '__import__(\"" + module + "\")'"
	if pre := strings.TrimRight(strings.TrimSpace(g.RemotePre), ";"); pre != "" {
		cmd = pre + " && " + cmd
	}
	var stderr bytes.Buffer
	if err := runSession(sess, cmd, &stderr); err != nil {
		msg := lastLine(stderr.String())
		if ctx.Err() != nil {
			msg = "no answer in time"
		} else if msg == "" {
			msg = oneLine(err.Error())
		}
		chk.Status = StatusError
		fix := "install the package that provides " + module + " for that python"
		if strings.HasPrefix(module, "ipykernel") {
			fix = "install ipykernel for that python (" + python + " -m pip install ipykernel)"
		}
		chk.Message = python + " cannot import " + module + ": " + msg + "; " + fix + ", or point the remote kernel spec's argv at a python that has it"
		return chk, true
	}
	chk.Status, chk.Message = StatusOK, python+" imports "+module
	return chk, true
}

// runSession runs cmd in sess with no stdin, its stderr into stderr, and waits
// for it and for its output.
func runSession(sess transport.Session, cmd string, stderr *bytes.Buffer) error {
	errp, err := sess.StderrPipe()
	if err != nil {
		return err
	}
	if err := sess.Start(cmd); err != nil {
		return err
	}
	_, _ = io.Copy(stderr, io.LimitReader(errp, 64<<10))
	return sess.Wait()
}

// shQuote single-quotes s for the remote login shell (sh, bash, zsh, csh and
// fish all read '…' literally), keeping a leading ~/ outside the quotes.
func shQuote(s string) string {
	prefix := ""
	if strings.HasPrefix(s, "~/") {
		prefix, s = "~/", s[2:]
	}
	return prefix + "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// lastLine is the last non-empty line of s: Python's traceback ends with
// the one line that says what went wrong.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
