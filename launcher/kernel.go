package launcher

import (
	"context"

	"github.com/gopyk/gopyk/provisioner"
	"github.com/gopyk/gopyk/wire"
)

// kernelHandle is the part of *provisioner.Kernel the launcher drives; tests
// substitute a fake.
type kernelHandle interface {
	Interrupt(ctx context.Context) error
	Restart(ctx context.Context) error
	Shutdown(ctx context.Context) error
	Leave() error
	Done() <-chan struct{}
	Released() <-chan struct{}
	Err() error
	State() provisioner.State
	Local() wire.ConnInfo
}

// starter launches or re-attaches a remote kernel.
type starter interface {
	Launch(ctx context.Context, cfg provisioner.Config) (kernelHandle, error)
	Attach(ctx context.Context, cfg provisioner.Config, st provisioner.State) (kernelHandle, error)
}

// realStarter is the production starter: the provisioner package itself.
type realStarter struct{}

func (realStarter) Launch(ctx context.Context, cfg provisioner.Config) (kernelHandle, error) {
	k, err := provisioner.Launch(ctx, cfg)
	if err != nil {
		return nil, err // not k: a typed nil would look like a live kernel
	}
	return k, nil
}

func (realStarter) Attach(ctx context.Context, cfg provisioner.Config, st provisioner.State) (kernelHandle, error) {
	k, err := provisioner.Attach(ctx, cfg, st)
	if err != nil {
		return nil, err
	}
	return k, nil
}
