package master

import (
	"context"
	"errors"

	"github.com/gopyk/gopyk/sshconf"
)

// Windows has no master: each gopyk-kernel keeps its own connection.
const supported = false

// ErrUnsupported: no masters on this system.
var ErrUnsupported = errors.New("gopyk's connection master needs Unix sockets and file descriptor passing; on Windows each kernel keeps its own connection")

func IsMaster() bool { return false }
func Main() int      { return 2 }
func Ensure(context.Context, sshconf.Route, Options) (string, error) {
	return "", ErrUnsupported
}
func SocketPath(sshconf.Route) (string, error)     { return "", ErrUnsupported }
func Dir() (string, error)                         { return "", ErrUnsupported }
func Status(context.Context, string) (Info, error) { return Info{}, ErrUnsupported }
func Stop(context.Context, string) error           { return ErrUnsupported }
func ParseFailure(reason string) error             { return errors.New(reason) }

// ErrNotGopyk as on Unix (never returned here).
var ErrNotGopyk = errors.New("this program is not gopyk or gopyk-kernel")
