// Package transport is what provisioner and `gopyk list` need from a
// connection to a host, whatever carries it: run a command with stdin,
// stdout and stderr (Session), open a stream to a unix socket on the host if
// forwarding works (DialUnix), tell when the connection is gone (Done, Err),
// and Close. Kept that small (mutagen's transport is the model) so that
// every carrier fits behind it.
//
// Carriers: the native client (sshconf.Dial, golang.org/x/crypto), a live
// OpenSSH ControlMaster found at the host's ControlPath (the user's `ssh -M
// -f -N host`: no new TCP connection, no login), the host's gopyk master
// (package master, started on first use: one connection per host for every
// kernel; Options.Master), and the user's ssh binary run once per
// connection as a master of our own (spec ssh_client openssh: GSSAPI,
// PKCS#11 and every ssh_config feature behave as `ssh alias`). Dial picks
// one, in that order of preference for a live master.
package transport
