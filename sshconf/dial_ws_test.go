package sshconf

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gopyk/gopyk/wsproxy"
)

// A gopyk ws-proxy ProxyCommand dialled in-process keeps wsproxy's kind of
// failure, so the provisioner can pace retries by cause.
func TestDialWebSocketFailureKind(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/hub/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(424)
			w.Write([]byte(`{"message": "JupyterHub server no longer running at /user/u/sshd/."}`))
			return
		}
		http.Redirect(w, r, "/hub"+r.URL.Path, http.StatusFound)
	}))
	defer srv.Close()
	st := &Settings{Alias: "hub", HostName: "hub.invalid", Port: 22, User: "u", BatchMode: true,
		StrictHostKeyChecking: "yes", ConnectTimeout: 5 * time.Second,
		ProxyCommand: "gopyk ws-proxy " + strings.Replace(srv.URL, "http://", "ws://", 1) + "/user/u/sshd/"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Dial(ctx, Route{st}, DialOptions{})
	if !errors.Is(err, wsproxy.ErrServerNotRunning) || !errors.Is(err, ErrProxyCommand) {
		t.Fatalf("err %v: want ErrServerNotRunning and ErrProxyCommand", err)
	}
	if !strings.Contains(err.Error(), "your server is not running") {
		t.Fatalf("err %v", err)
	}
}
