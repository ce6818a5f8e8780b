// Package wsproxy carries an SSH connection over a WebSocket, the way
// JupyterHub's jupyter-sshd-proxy and hosted notebook platforms expose sshd:
// Run is `gopyk ws-proxy URL` as an ssh ProxyCommand (stdin/stdout ⇄ binary
// WebSocket messages); ParseCommand and Dial let a caller that meets that
// ProxyCommand open the same stream in-process instead of starting it.
//
// Credentials come from files or an environment variable, never from argv,
// because argv is visible to every local user in the process list; URLs are
// shown with their query values hidden.
package wsproxy
