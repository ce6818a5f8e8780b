// Package remote holds the launcher script that runs on the remote host (Python
// standard library only), the shell command that starts it, and the framed
// protocol spoken with it over an SSH exec session and its control socket.
package remote
