// Package wsproxy carries an SSH connection over a WebSocket, the way
// JupyterHub's jupyter-sshd-proxy and hosted notebook platforms expose sshd:
// `gopyk ws-proxy URL` as an ssh ProxyCommand (stdin/stdout ⇄ binary
// WebSocket messages), and Dial for callers that want the net.Conn in-process.
//
// Credentials come from files or an environment variable, never from argv,
// because argv is visible to every local user in the process list.
package wsproxy
