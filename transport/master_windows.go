//go:build windows

package transport

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/gopyk/gopyk/sshconf"
)

// Windows' ssh.exe has no ControlMaster: no master to find or to open.

func userMaster(context.Context, *sshconf.Settings, *slog.Logger) Conn { return nil }

// MasterAlive is always false on Windows.
func MasterAlive(context.Context, *sshconf.Settings) bool { return false }

func dialOpenSSH(_ context.Context, route sshconf.Route, _ Options, _ *slog.Logger) (Conn, error) {
	return nil, &sshconf.DialError{Target: route.Target().Alias,
		Err:  errors.New("ssh_client openssh needs OpenSSH's ControlMaster, which Windows' ssh.exe does not have"),
		Hint: "use gopyk edit --ssh-client native"}
}

// AskpassMain: gopyk never runs as ssh's askpass on Windows.
func AskpassMain([]string, io.Writer, io.Writer) (int, bool) { return 0, false }

func gopykMaster(context.Context, sshconf.Route, Options, *slog.Logger) (Conn, error) {
	return nil, errors.New("gopyk's master is Unix only")
}
