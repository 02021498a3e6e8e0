package netplane

import (
	"testing"

	"go.uber.org/goleak"
)

// Every listener, proxy and tunnel goroutine ends with its Plane.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
