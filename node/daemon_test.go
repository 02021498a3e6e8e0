package node

import (
	"bytes"
	"strings"
	"testing"
)

// --engine is for tests: -help does not show it, and a wrong value is a
// one-line error.
func TestHiddenEngineFlag(t *testing.T) {
	var out bytes.Buffer
	if code := Main("managerd", []string{"-help"}, &out); code != 2 {
		t.Fatalf("-help exit %d", code)
	}
	if !strings.Contains(out.String(), "-state-dir") || strings.Contains(out.String(), "engine") {
		t.Fatalf("-help:\n%s", out.String())
	}
	out.Reset()
	if code := Main("managerd", []string{"--engine", "bogus"}, &out); code != 2 {
		t.Fatalf("--engine bogus exit %d", code)
	}
	if got := strings.TrimSpace(out.String()); got != `Error: invalid --engine "bogus": use docker` {
		t.Fatalf("--engine bogus: %q", got)
	}
}
