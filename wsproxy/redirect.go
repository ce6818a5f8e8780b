package wsproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// explainRedirect tells redirects apart by where they point. A notebook
// platform answers a WebSocket upgrade with a redirect for three different
// reasons, and the user's fix differs:
//   - to /hub/…: JupyterHub's proxy sent the request to the Hub because the
//     user's server is not running (the Hub can say more: asked for JSON,
//     JupyterHub 3 answers "JupyterHub server no longer running at …");
//   - to a login page: the credentials were not accepted;
//   - to the same path with a slash added or removed: a running Jupyter
//     Server has no such endpoint (its TrailingSlashHandler answers every
//     unknown path ending in "/" with a 302 to the path without it).
func (o *Options) explainRedirect(ctx context.Context, u *url.URL, resp *http.Response, hc *http.Client, header http.Header, e *Error) string {
	st := resp.Status
	loc, err := resp.Location()
	if err != nil {
		return fmt.Sprintf("server answered %s without a usable Location: not the sshd endpoint; check the URL", st)
	}
	shown := *loc
	shown.RawQuery, shown.User, shown.Fragment = "", nil, ""
	sameHost := loc.Host == u.Host
	switch {
	case sameHost && loc.Path == u.Path+"/":
		e.Kind = ErrNoEndpoint
		want := *u
		want.Path += "/"
		want.RawPath = ""
		return fmt.Sprintf("server answered %s to the same path with a slash added: the endpoint is %s; write the URL that way", st, Redacted(want.String()))
	case sameHost && loc.Path+"/" == u.Path:
		e.Kind = ErrNoEndpoint
		return fmt.Sprintf("server answered %s to %s (the same path without its slash): the server runs but has no such endpoint; check the URL, or jupyter-sshd-proxy is not installed on it", st, shown.Path)
	case isLogin(loc.Path):
		e.Kind = ErrAuthRejected
		return fmt.Sprintf("server answered %s to its login page %s: the token or cookie was not accepted; %s", st, shown.String(), o.credentialHint())
	case strings.Contains(loc.Path, "/hub/spawn-pending/"):
		e.Kind = ErrServerStarting
		return fmt.Sprintf("server answered %s to %s: your server is starting; retry when it runs", st, shown.String())
	case hubBase(loc.Path) != "":
		e.Kind = ErrServerNotRunning
		start := *loc
		start.RawQuery, start.User, start.Fragment = "", nil, ""
		start.Path = hubBase(loc.Path) + "home"
		if user := hubUser(loc.Path); user != "" {
			start.Path = hubBase(loc.Path) + "spawn/" + user
		}
		msg := fmt.Sprintf("server answered %s to %s: your server is not running: start it at %s", st, shown.String(), start.String())
		if sameHost {
			if words, kind := o.askHub(ctx, loc, u.Path, hc, header); words != "" {
				e.Kind = kind
				switch kind {
				case ErrNoEndpoint:
					return fmt.Sprintf("server answered %s to %s, and the Hub %s: check the user name in the URL", st, shown.String(), words)
				case ErrAuthRejected:
					return fmt.Sprintf("server answered %s to %s, and the Hub %s: the token or cookie was not accepted; %s", st, shown.String(), words, o.credentialHint())
				case ErrServerStarting:
					return fmt.Sprintf("server answered %s to %s, and the Hub %s: your server is starting; retry when it runs", st, shown.String(), words)
				}
				return fmt.Sprintf("server answered %s to %s: your server is not running: the Hub says %q", st, shown.String(), words)
			}
		}
		return msg
	}
	return fmt.Sprintf("server answered %s (redirect to %s): not the sshd endpoint; check the URL", st, shown.String())
}

// askHub follows the Hub's redirect once, asking for JSON with the same
// credentials, and returns the Hub's own words and what they mean; ""
// when the Hub says nothing usable. Same host only: the credentials must
// not go anywhere else.
func (o *Options) askHub(ctx context.Context, loc *url.URL, asked string, hc *http.Client, header http.Header) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
	if err != nil {
		return "", nil
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		o.Log.Debug("asking the Hub failed", "err", err)
		return "", nil
	}
	defer resp.Body.Close()
	o.Log.Debug("the Hub answered", "status", resp.Status)
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		next, err := resp.Location()
		switch {
		case err != nil:
		case isLogin(next.Path):
			return "sent it to its login page", ErrAuthRejected
		case strings.Contains(next.Path, "/hub/spawn-pending/"):
			return "says it is pending", ErrServerStarting
		case next.Path == asked:
			// Back where we came from: the server is ready now.
			return "says it is ready now", ErrServerStarting
		case !strings.Contains(next.Path, "/hub/"):
			// To the token owner's own server: the URL names another user.
			return "sends this token's user to " + next.Path + " instead (the URL names another user's server)", ErrAuthRejected
		}
		return "", nil
	case resp.StatusCode == 401 || resp.StatusCode == 403:
		if w := jsonMessage(resp.Body); w != "" {
			return fmt.Sprintf("says %q", w), ErrAuthRejected
		}
		return "refused it (" + resp.Status + ")", ErrAuthRejected
	case resp.StatusCode == 404:
		return "answered " + resp.Status + " (no such user, or not one this token may use)", ErrNoEndpoint
	}
	return jsonMessage(resp.Body), ErrServerNotRunning
}

// serverWords is a JSON error body's message, as " (the server says "…")",
// or "".
func serverWords(body io.Reader) string {
	if body == nil {
		return ""
	}
	if w := jsonMessage(body); w != "" {
		return fmt.Sprintf(" (the server says %q)", w)
	}
	return ""
}

// jsonMessage reads {"message": "…"} (Jupyter Server's and JupyterHub's
// error bodies) from at most 4 KiB of body.
func jsonMessage(body io.Reader) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.NewDecoder(io.LimitReader(body, 4096)).Decode(&m) != nil {
		return ""
	}
	return strings.Join(strings.Fields(m.Message), " ")
}

// isLogin: Jupyter Server's /login, JupyterHub's /hub/login and its OAuth
// authorize step, which a single-user server sends unknown clients to.
func isLogin(p string) bool {
	p = strings.TrimSuffix(p, "/")
	return strings.HasSuffix(p, "/login") || strings.Contains(p, "/oauth2/authorize") || strings.HasSuffix(p, "/oauth_login")
}

// hubBase is the path up to and including JupyterHub's "/hub/" segment
// ("/prefix/hub/"), or "".
func hubBase(p string) string {
	if i := strings.Index(p+"/", "/hub/"); i >= 0 {
		return p[:i] + "/hub/"
	}
	return ""
}

// hubUser is NAME of /…/hub/user/NAME/…, or "".
func hubUser(p string) string {
	rest, ok := strings.CutPrefix(p, hubBase(p)+"user/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}
