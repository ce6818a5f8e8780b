// Package provisioner owns a remote kernel's lifecycle from the local side:
// launch or attach over one SSH connection, forward the five kernel channels to
// local ports, interrupt, restart, shut down, leave, and reconnect.
package provisioner
