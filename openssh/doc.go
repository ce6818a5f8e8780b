// Package openssh is the user's own OpenSSH, for what golang.org/x/crypto
// cannot do (Kerberos/GSSAPI, PKCS#11, a login typed into a master opened by
// hand): a client of a ControlMaster's multiplexing protocol (OpenSSH's
// PROTOCOL.mux: sessions with passed file descriptors, stdio forwards to
// remote unix sockets, alive checks, terminate), and Start, which runs the
// ssh binary once to open a master. Everything after the login goes through
// the master: no ssh process per session or stream, and no TCP connection or
// login of our own.
//
// Unix only: Windows' ssh.exe has no ControlMaster.
package openssh
