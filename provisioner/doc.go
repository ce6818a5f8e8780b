// Package provisioner owns a remote kernel's lifecycle from the local side:
// launch or attach over one SSH connection, forward the five kernel channels to
// local ports (each client connection a stream relayed by the supervisor, which
// resumes after a reconnect), interrupt, restart, shut down, leave, and reconnect.
package provisioner
