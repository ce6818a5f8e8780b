// Package wsproxy carries an SSH connection over a WebSocket, the way
// JupyterHub's jupyter-sshd-proxy and hosted notebook platforms expose sshd:
// Run is `gopyk ws-proxy URL` as an ssh ProxyCommand (stdin/stdout ⇄ binary
// WebSocket messages); ParseCommand and Dial let a caller that meets that
// ProxyCommand open the same stream in-process instead of starting it.
//
// A failed handshake or a connection that ends is an *Error in plain words
// ("your server is not running: start it at …"), with a kind callers can
// test with errors.Is to pace retries by cause (ErrServerNotRunning,
// ErrNoEndpoint, ErrAuthRejected, …). The stream is built for gateways
// that leave Nagle on (jupyter-server-proxy under tornado): it acknowledges
// at once (TCP_QUICKACK) and coalesces back-to-back writes into one message.
//
// Credentials come from files or an environment variable, never from argv,
// because argv is visible to every local user in the process list; URLs are
// shown with their query values hidden.
package wsproxy
