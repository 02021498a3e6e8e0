package raft

import (
	"errors"
	"testing"
	"time"
)

// TestWaitBoundedGivesUp: a shutdown that never finishes (hashicorp/raft's
// pipelined replication can block forever on a queue nobody drains) is
// given up after the bound instead of hanging the caller, and one that
// finishes returns its own result.
func TestWaitBoundedGivesUp(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	start := time.Now()
	err := waitBounded(func() error { <-block; return nil }, 50*time.Millisecond)
	if !errors.Is(err, errShutdownStuck) {
		t.Fatalf("a wait that never ends returned %v, want errShutdownStuck", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("gave up after %v, want about the 50ms bound", el)
	}
	want := errors.New("closed")
	if err := waitBounded(func() error { return want }, time.Second); err != want {
		t.Fatalf("a wait that ends returned %v, want its own error", err)
	}
}
