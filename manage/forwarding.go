package manage

import (
	"context"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/provisioner/remote"
	"github.com/gopyk/gopyk/transport"
)

// forwardingCheck says which path to the supervisor the host allows: SSH
// forwarding to a unix socket (the launcher opens one to probe), or, when
// the server refuses it, one exec session carrying every stream. A spec
// forced to forward on such a server is an error.
func forwardingCheck(ctx context.Context, c transport.Conn, g kernelspec.Gopyk, spec string) Check {
	chk := Check{Label: "Forwarding"}
	sess, err := c.NewSession()
	if err != nil {
		chk.Status, chk.Message = StatusError, "open an exec session: "+oneLine(err.Error())
		return chk
	}
	ok, err := remote.ProbeForward(ctx, sess, remote.Params{Python: g.RemotePython, Pre: g.RemotePre},
		c.DialUnix)
	switch {
	case err != nil:
		chk.Status, chk.Message = StatusUnknown, "not checked: "+oneLine(err.Error())
	case ok:
		chk.Status, chk.Message = StatusOK, "unix sockets"
	case g.Streams == kernelspec.StreamsForward:
		chk.Status = StatusError
		chk.Message = "refused by the server (AllowStreamLocalForwarding no, or DisableForwarding yes), and this spec forces it; fix: gopyk edit --kernel-name " +
			spec + " --streams auto, or ask for AllowStreamLocalForwarding yes"
	default:
		chk.Status, chk.Message = StatusInfo, "refused by the server; gopyk uses one session"
	}
	return chk
}
