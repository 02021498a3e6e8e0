package node

import (
	"bytes"
	"strings"
	"testing"
)

func TestMainRejectsNegativePullStallTimeout(t *testing.T) {
	var stderr bytes.Buffer
	if code := Main("workerd", []string{"--image-pull-stall-timeout", "-5s"}, &stderr); code != 2 || !strings.Contains(stderr.String(), "--image-pull-stall-timeout") {
		t.Fatalf("Main with a negative --image-pull-stall-timeout = %d, %q", code, stderr.String())
	}
}
