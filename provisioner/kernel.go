package provisioner

import (
	"context"
	"errors"

	"github.com/gopyk/gopyk/wire"
)

// kernel is a placeholder until the launch path lands.
type kernel struct {
	done chan struct{}
	cfg  Config
}

var errNotYet = errors.New("provisioner: not implemented yet")

func launch(ctx context.Context, cfg Config) (*Kernel, error)           { return nil, errNotYet }
func attach(ctx context.Context, cfg Config, st State) (*Kernel, error) { return nil, errNotYet }
func (k *kernel) interrupt(ctx context.Context) error                   { return errNotYet }
func (k *kernel) restart(ctx context.Context) error                     { return errNotYet }
func (k *kernel) shutdown(ctx context.Context) error                    { return errNotYet }
func (k *kernel) leave() error                                          { return errNotYet }
func (k *kernel) close(ctx context.Context) error                       { return errNotYet }
func (k *kernel) err() error                                            { return nil }
func (k *kernel) state() State                                          { return State{} }
func (k *kernel) local() wire.ConnInfo                                  { return k.cfg.Local }
