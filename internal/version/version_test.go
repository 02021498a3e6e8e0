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
