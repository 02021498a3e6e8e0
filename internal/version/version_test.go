package version

import (
	"runtime"
	"testing"
)

func TestGetFillsEveryField(t *testing.T) {
	i := Get()
	if i.Version == "" || i.GoVersion != runtime.Version() || i.API != API {
		t.Fatalf("Get() = %+v", i)
	}
	old := Version
	defer func() { Version = old }()
	Version = "v9.9.9"
	if got := Get().Version; got != "v9.9.9" {
		t.Fatalf("stamped version: %q", got)
	}
}

// TestGetReadsBuildInfoOnce: Get is called on every heartbeat of every
// node; the build information is parsed once, not on each call (which
// cost dozens of allocations a call).
func TestGetReadsBuildInfoOnce(t *testing.T) {
	Get()
	if n := testing.AllocsPerRun(100, func() { _ = Get() }); n > 2 {
		t.Fatalf("Get allocates %v times a call, want at most 2 (the build information read once)", n)
	}
}
