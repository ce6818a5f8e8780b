package sshconf

import (
	"context"
	"errors"
)

type builtinBackend struct {
	configFile string
	local      localEnv
}

func newBuiltin(configFile string, local localEnv) backend {
	return &builtinBackend{configFile: configFile, local: local}
}

func (b *builtinBackend) name() string { return "builtin" }

func (b *builtinBackend) lookup(ctx context.Context, host, user string, port int) (map[string][]string, error) {
	return nil, errors.New("builtin ssh config backend: not implemented yet; install OpenSSH's ssh")
}
