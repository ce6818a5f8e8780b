//go:build linux

package remote

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine this package starts has an owner that ends it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
