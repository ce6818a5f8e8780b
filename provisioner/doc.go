// Package provisioner owns a remote kernel's lifecycle from the local side:
// launch or attach over one connection to the host (a transport.Conn: a live
// OpenSSH master, the host's gopyk master, the native client, or the user's
// ssh; specs ssh_client and master), forward the five kernel channels to
// local ports (each client connection a stream relayed by the supervisor,
// which resumes after a reconnect; its ZMTP handshake answered locally,
// zmtpfront.go),
// interrupt, restart, shut down, leave, and reconnect. Every connection to
// the supervisor goes over a Link: forwarding to its unix socket, or one exec
// session multiplexing them all when the server refuses forwarding (spec
// streams: auto, forward, session).
//
// A refused re-login is paced apart from network errors (authpace.go): at
// most 3 per 10 minutes; one nobody can answer costs no failed login, and the
// host's ControlPath is checked meanwhile, so a master the user opens brings
// the kernel back.
//
// A connection counts as lost after the spec's link timeout without a byte
// from the server (15 s, whatever ServerAliveInterval says); reconnect
// attempts are paced by cause (retrypace.go). While it is lost, running
// cells hear of it on iopub: the local side follows the shell channel's
// requests and the iopub channel's ZMTP frames to put signed stream
// messages between the kernel's own (notice.go, zmtp.go).
package provisioner
