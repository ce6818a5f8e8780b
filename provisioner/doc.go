// Package provisioner owns a remote kernel's lifecycle from the local side:
// launch or attach over one SSH connection, forward the five kernel channels to
// local ports (each client connection a stream relayed by the supervisor, which
// resumes after a reconnect), interrupt, restart, shut down, leave, and reconnect.
// Every connection to the supervisor goes over a Link: SSH forwarding to its
// unix socket, or one exec session multiplexing them all when the server
// refuses forwarding (spec streams: auto, forward, session).
package provisioner
