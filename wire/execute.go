package wire

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// ExecResult is what one execute_request produced.
type ExecResult struct {
	MsgID          string
	Status         string // "ok", "error" or "aborted"
	ExecutionCount int
	Reply          map[string]any // execute_reply content
	Stdout, Stderr string
	Result         string // text/plain of execute_result
	Ename, Evalue  string
	Traceback      []string
}

// ExecOption tunes one Execute.
type ExecOption func(*execOptions)

type execOptions struct {
	onIOPub       func(*Message)
	silent        bool
	continueOnErr bool
}

// OnIOPub calls f (from Execute's goroutine) for every iopub message of the
// request as it arrives, e.g. to stream output.
func OnIOPub(f func(*Message)) ExecOption { return func(o *execOptions) { o.onIOPub = f } }

// Silent asks the kernel not to broadcast output or count the execution.
func Silent() ExecOption { return func(o *execOptions) { o.silent = true } }

// ContinueOnError sends stop_on_error false: if the cell fails (or is
// interrupted), requests that reach the kernel meanwhile run rather than
// being aborted.
func ContinueOnError() ExecOption { return func(o *execOptions) { o.continueOnErr = true } }

// Execute runs code and returns once both the execute_reply and iopub
// status idle for it have arrived; they come in either order.
func (c *Client) Execute(ctx context.Context, code string, opts ...ExecOption) (*ExecResult, error) {
	var o execOptions
	for _, opt := range opts {
		opt(&o)
	}
	m := c.NewMessage("execute_request", map[string]any{
		"code":             code,
		"silent":           o.silent,
		"store_history":    !o.silent,
		"user_expressions": map[string]any{},
		"allow_stdin":      false,
		"stop_on_error":    !o.continueOnErr,
	})
	id := m.Header.MsgID
	w := c.register(id)
	defer c.unregister(id)
	if err := c.send(c.shell, m); err != nil {
		return nil, err
	}
	res := &ExecResult{MsgID: id}
	var out, errOut strings.Builder
	gotReply, gotIdle := false, false
	for !gotReply || !gotIdle {
		// iopub may be the channel that dies; shell is the one we must hear.
		r, err := c.next(ctx, w, c.shell, "execute_reply and idle")
		if err != nil {
			return nil, fmt.Errorf("execute: %w", err)
		}
		switch r.Channel {
		case Shell:
			if r.Header.MsgType != "execute_reply" {
				continue
			}
			gotReply = true
			res.Reply = r.Content
			res.Status = r.Str("status")
			if n, ok := r.Content["execution_count"].(float64); ok {
				res.ExecutionCount = int(n)
			}
			if res.Status == "error" && res.Ename == "" {
				res.Ename, res.Evalue = r.Str("ename"), r.Str("evalue")
				res.Traceback = strs(r.Content["traceback"])
			}
		case IOPub:
			if o.onIOPub != nil {
				o.onIOPub(r)
			}
			switch r.Header.MsgType {
			case "status":
				gotIdle = gotIdle || r.Str("execution_state") == "idle"
			case "stream":
				if r.Str("name") == "stderr" {
					errOut.WriteString(r.Str("text"))
				} else {
					out.WriteString(r.Str("text"))
				}
			case "execute_result":
				if d, ok := r.Content["data"].(map[string]any); ok {
					res.Result, _ = d["text/plain"].(string)
				}
			case "error":
				res.Ename, res.Evalue = r.Str("ename"), r.Str("evalue")
				res.Traceback = strs(r.Content["traceback"])
			}
		}
	}
	res.Stdout, res.Stderr = out.String(), errOut.String()
	return res, nil
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// RoundTrip executes "pass" n times and returns each round trip (request
// sent → reply and idle both received), for benchmarks.
func (c *Client) RoundTrip(ctx context.Context, n int) ([]time.Duration, error) {
	d := make([]time.Duration, 0, n)
	for i := range n {
		t := time.Now()
		r, err := c.Execute(ctx, "pass")
		if err != nil {
			return d, fmt.Errorf("round trip %d of %d: %w", i+1, n, err)
		}
		if r.Status != "ok" {
			return d, fmt.Errorf("round trip %d of %d: status %q", i+1, n, r.Status)
		}
		d = append(d, time.Since(t))
	}
	return d, nil
}
