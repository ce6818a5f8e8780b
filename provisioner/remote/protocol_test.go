//go:build linux

package remote

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func runOn(t *testing.T, remote string, p Params) (*Reply, string, error) {
	t.Helper()
	var sent strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := Run(ctx, &sent, strings.NewReader(remote), p)
	return r, sent.String(), err
}

func TestRunParsing(t *testing.T) {
	ok := Magic + `{"ok":true,"supervisor_pid":7,"kernel_pid":8,"transport":"ipc","ports":[1,2,3,4,5],"channels":{"shell":"/r/k-1"}}`
	cases := []struct {
		name, out string
		check     func(*Reply, error) string
	}{
		{"plain", ok + "\n", func(r *Reply, err error) string {
			if err != nil || r.SupervisorPID != 7 || r.Channels.Shell != "/r/k-1" || r.RemoteConnInfo("k", "s").HBPort != 5 {
				return "bad reply"
			}
			return ""
		}},
		{"noise before, no newline after", "Welcome!\nlast login\npartial" + ok, func(r *Reply, err error) string {
			if err != nil || r.KernelPID != 8 {
				return "noise broke parsing"
			}
			return ""
		}},
		{"crlf", "motd\r\n" + ok + "\r\n", func(r *Reply, err error) string {
			if err != nil {
				return "crlf broke parsing"
			}
			return ""
		}},
		{"huge noise line", strings.Repeat("x", 3<<20) + "\n" + ok + "\n", func(r *Reply, err error) string {
			if err != nil {
				return "long noise broke parsing"
			}
			return ""
		}},
		{"truncated", "noise\n" + ok[:len(ok)-20], func(r *Reply, err error) string {
			var pe *ProtocolError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), "malformed reply") {
				return "want a ProtocolError"
			}
			return ""
		}},
		{"garbage", Magic + "this is not json\n", func(r *Reply, err error) string {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				return "want a ProtocolError"
			}
			return ""
		}},
		{"wrong types", Magic + `{"ok":true,"kernel_pid":"eight"}` + "\n", func(r *Reply, err error) string {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				return "want a ProtocolError"
			}
			return ""
		}},
		{"neither op nor ok", Magic + `{"hello":1}` + "\n", func(r *Reply, err error) string {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				return "want a ProtocolError"
			}
			return ""
		}},
		{"eof without reply", "only noise\n", func(r *Reply, err error) string {
			var nr *NoReplyError
			if !errors.As(err, &nr) || !errors.Is(err, ErrNoReply) || !nr.PreOK {
				return "want a NoReplyError"
			}
			return ""
		}},
		{"error reply", Magic + `{"ok":false,"code":"kernel_died","error":"the kernel died while starting (exit code 1)","exit_code":1,"stderr_tail":"a\nModuleNotFoundError: No module named 'ipykernel'"}` + "\n", func(r *Reply, err error) string {
			var re *ReplyError
			if !errors.As(err, &re) || re.Code != CodeKernelDied || *re.ExitCode != 1 || !strings.Contains(err.Error(), "No module named 'ipykernel'") {
				return "want a ReplyError"
			}
			if e := ExplainExit(0, "", err); !strings.Contains(e.Error(), "fix:") || strings.Contains(e.Error(), "\n") {
				return "ExplainExit: " + e.Error()
			}
			return ""
		}},
		{"error reply without message", Magic + `{"ok":false}` + "\n", func(r *Reply, err error) string {
			if err == nil || !strings.Contains(err.Error(), "unspecified error") {
				return "want an unspecified error"
			}
			return ""
		}},
		{"unknown request", Magic + `{"op":"dance"}` + "\n", func(r *Reply, err error) string {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				return "want a ProtocolError"
			}
			return ""
		}},
	}
	for _, c := range cases {
		r, _, err := runOn(t, c.out, Params{Action: ActionStatus, RunDir: "/r"})
		if msg := c.check(r, err); msg != "" {
			t.Errorf("%s: %s (reply %+v, err %v)", c.name, msg, r, err)
		}
	}
}

func TestRunUploadsAndPre(t *testing.T) {
	out := "rc noise\n" + Magic + `{"op":"pre_ok"}` + "\n" + Magic + `{"op":"upload"}` + "\n" + Magic + `{"ok":true}` + "\n"
	_, sent, err := runOn(t, out, Params{Action: ActionList, Key: "abc", Pre: "module load x"})
	if err != nil {
		t.Fatal(err)
	}
	first, rest, _ := strings.Cut(sent, "\n")
	if !strings.Contains(first, `"action":"list"`) || strings.Contains(first, "module load") {
		t.Errorf("params line: %s", first)
	}
	if rest != itoa(len(Artifact()))+"\n"+string(Artifact()) {
		t.Error("upload is not <length>\\n<artifact>")
	}
	// pre given but never confirmed: the pre command failed.
	_, _, err = runOn(t, "", Params{Action: ActionList, Pre: "module load x", Python: "py"})
	var nr *NoReplyError
	if !errors.As(err, &nr) || nr.PreOK {
		t.Fatalf("want NoReplyError with PreOK false: %v", err)
	}
	if e := ExplainExit(1, "module: command not found\n", err).Error(); !strings.Contains(e, `remote pre-command "module load x" failed (exit status 1): module: command not found; fix: gopyk edit --remote-pre`) {
		t.Errorf("explained: %s", e)
	}
}

func TestRunContext(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := Run(ctx, io.Discard, pr, Params{Action: ActionList})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 2*time.Second {
		t.Fatalf("silent remote: %v after %v", err, time.Since(t0))
	}
}

func TestParamsNeverInCommand(t *testing.T) {
	cmd := Command("/opt/py/bin/python3", "module load python")
	for _, bad := range []string{"\n", "!", `\\`} {
		if strings.Contains(cmd, bad) {
			t.Errorf("command contains %q: %s", bad, cmd)
		}
	}
	if !strings.HasPrefix(cmd, "module load python && echo '"+Magic) || !strings.Contains(cmd, "exec '/opt/py/bin/python3' -c '") {
		t.Errorf("command: %s", cmd)
	}
	if strings.Count(bootstrapArg, "'") != 0 || !strings.Contains(bootstrapArg, Hash()) {
		t.Error("bootstrap must hold the hash and no single quote")
	}
	if got := Command("", ""); !strings.HasPrefix(got, "exec 'python3' -c") {
		t.Errorf("default python: %s", got)
	}
	if got := quotePath("~/a b/py"); got != `~/'a b/py'` {
		t.Errorf("tilde: %s", got)
	}
}

func FuzzParseFrame(f *testing.F) {
	for _, s := range []string{
		Magic + `{"ok":true,"supervisor_pid":1,"ports":[1,2,3,4,5],"channels":{"shell":"x"}}`,
		Magic + `{"ok":false,"code":"unknown_kernel","kernel_names":["a"],"error":"x"}`,
		Magic + `{"op":"upload"}`,
		"noise" + Magic + `{"ok":tr`,
		Magic + `{"ok":true,"kernels":[{"ok":true,"exit_code":3}]}`,
		Magic, "plain noise", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		fr, ok, err := parseFrame(line)
		if !ok && err != nil {
			t.Fatalf("error on a line without frame: %v", err)
		}
		if ok && err == nil && fr.Op == "" && fr.Reply == nil {
			t.Fatal("frame without op or reply")
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error: %q", err)
		}
		_, _, _ = runOn(t, string(line), Params{Action: ActionList})
	})
}

func FuzzControlResponse(f *testing.F) {
	for _, s := range []string{
		`{"ok":true,"kernel_pid":3,"channels":{"hb":"x"}}`,
		`{"ok":false,"code":"busy","error":"the kernel is starting"}`,
		`{"ok":true,"exit_code":null,"signal":15,"stderr_tail":"a\nb"}`,
		`{"event":"kernel_exited","reason":"died","exit_code":1}`,
		`{"ok":false}`, `not json`, ``,
	} {
		f.Add([]byte(s + "\n"))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, out := range []any{&Reply{}, &Exit{}, nil} {
			err := readJSON(bufio.NewReader(bytes.NewReader(data)), out)
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
		}
		var ev Event
		_ = json.Unmarshal(data, &ev)
	})
}
