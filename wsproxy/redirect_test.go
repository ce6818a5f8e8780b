package wsproxy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The answers of JupyterHub 3 and Jupyter Server 1.23 to a WebSocket
// upgrade, by path, told apart by where their redirects point. The e2e
// tests meet the real servers; this one pins each rule.
func TestRedirects(t *testing.T) {
	var hubAsked []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		// configurable-http-proxy sends a stopped server's path to the
		// Hub, whose PrefixRedirectHandler adds /hub.
		case strings.HasPrefix(p, "/user/"):
			if strings.HasSuffix(p, "/sshdd/") { // a running Jupyter Server's TrailingSlashHandler
				http.Redirect(w, r, strings.TrimSuffix(p, "/"), http.StatusFound)
				return
			}
			if strings.HasSuffix(p, "/sshd") { // jupyter-server-proxy's addslash
				http.Redirect(w, r, p+"/", http.StatusFound)
				return
			}
			http.Redirect(w, r, "/hub"+p, http.StatusFound)
		case strings.HasPrefix(p, "/hub/user/"):
			hubAsked = append(hubAsked, r.Header.Clone())
			user := strings.Split(p, "/")[3]
			switch {
			case r.Header.Get("Authorization") != "token good":
				http.Redirect(w, r, "/hub/login?next="+p, http.StatusFound)
			case user == "starting":
				http.Redirect(w, r, "/hub/spawn-pending/starting?next="+p, http.StatusSeeOther)
			case r.Header.Get("Accept") == "application/json":
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(503)
				w.Write([]byte(`{"message": "JupyterHub server no longer running at /user/` + user + `/sshd/. Restart the server at http://` + r.Host + `/hub/spawn/` + user + `"}`))
			default:
				w.WriteHeader(503)
				w.Write([]byte("<html>not running</html>"))
			}
		case p == "/forbidden/":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(403)
			w.Write([]byte(`{"status": 403, "message": "Action is not authorized with current scopes; requires any of [access:servers]"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ws := strings.Replace(srv.URL, "http://", "ws://", 1)
	tok := func(v string) Options {
		return Options{TokenEnv: "T", Getenv: func(string) string { return v }}
	}
	for _, tc := range []struct {
		name, path string
		o          Options
		kind       error
		want       []string
	}{
		{"stopped, the Hub's words", "/user/alice/sshd/", tok("good"), ErrServerNotRunning,
			[]string{"302 Found to " + srv.URL + "/hub/user/alice/sshd/", "your server is not running", `the Hub says "JupyterHub server no longer running at /user/alice/sshd/. Restart the server at ` + srv.URL + `/hub/spawn/alice"`}},
		{"stopped, token refused by the Hub", "/user/alice/sshd/", tok("bad"), ErrAuthRejected,
			[]string{"302 Found to " + srv.URL + "/hub/user/alice/sshd/", "the Hub sent it to its login page", "not accepted", "--token-env T"}},
		{"starting", "/user/starting/sshd/", tok("good"), ErrServerStarting, []string{"your server is starting"}},
		{"no such endpoint", "/user/alice/sshdd/", tok("good"), ErrNoEndpoint,
			[]string{"302 Found to /user/alice/sshdd (the same path without its slash)", "the server runs but has no such endpoint", "jupyter-sshd-proxy is not installed"}},
		{"slash missing", "/user/alice/sshd", tok("good"), ErrNoEndpoint, []string{"slash added", ws + "/user/alice/sshd/"}},
		{"login", "/hub/user/alice/sshd/", tok("bad"), ErrAuthRejected, []string{"login page " + srv.URL + "/hub/login", "not accepted"}},
		{"403 with words", "/forbidden/", tok("good"), ErrAuthRejected, []string{"403 Forbidden", `"Action is not authorized with current scopes; requires any of [access:servers]"`, "rejected"}},
		{"404", "/nothing/", tok("good"), ErrNoEndpoint, []string{"404", "no such endpoint"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hubAsked = nil
			tc.o.URL = ws + tc.path + "?token=sekrit"
			t0 := time.Now()
			_, err := Dial(context.Background(), tc.o)
			if err == nil {
				t.Fatal("Dial succeeded")
			}
			if el := time.Since(t0); el > 2*time.Second {
				t.Errorf("took %v", el)
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %q is not %v", err, tc.kind)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "sekrit") {
				t.Errorf("error quotes the URL's token: %v", err)
			}
			for _, h := range hubAsked {
				if h.Get("Accept") != "application/json" && strings.HasPrefix(tc.name, "stopped") {
					t.Errorf("the Hub was asked without Accept: application/json: %v", h)
				}
			}
		})
	}
}

// A redirect to another host is not followed: the credentials stay home.
func TestRedirectElsewhereNotFollowed(t *testing.T) {
	asked := make(chan string, 1)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked <- r.Header.Get("Authorization")
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/hub/user/alice/sshd/", http.StatusFound)
	}))
	defer srv.Close()
	_, err := Dial(context.Background(), Options{URL: strings.Replace(srv.URL, "http://", "ws://", 1) + "/user/alice/sshd/", TokenEnv: "T", Getenv: func(string) string { return "tok" }})
	if !errors.Is(err, ErrServerNotRunning) || !strings.Contains(err.Error(), "start it at "+other.URL+"/hub/spawn/alice") {
		t.Fatalf("err %v", err)
	}
	select {
	case a := <-asked:
		t.Fatalf("the other host was asked (Authorization %q)", a)
	default:
	}
}
