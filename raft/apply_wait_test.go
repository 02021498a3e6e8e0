package raft

import (
	"context"
	"errors"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// stuckFuture is an Apply future hashicorp/raft never answers, as happens
// to one committed but not yet handed to the FSM when Raft shuts down.
type stuckFuture struct {
	hraft.ApplyFuture
	ch chan error
}

func (f stuckFuture) Error() error { return <-f.ch }

// A write waiting for its commit gives up with the caller's context, and
// with this node's Raft: a manager's Stop once hung forever on a leader
// component's write.
func TestWaitAppliedBounded(t *testing.T) {
	n := &Node{done: make(chan struct{})}
	f := stuckFuture{ch: make(chan error)}
	defer close(f.ch)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.waitApplied(ctx, f); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("past the caller's deadline: %v", err)
	}

	errc := make(chan error, 1)
	go func() { errc <- n.waitApplied(context.Background(), f) }()
	close(n.done)
	select {
	case err := <-errc:
		if !errors.Is(err, ErrShutdown) {
			t.Fatalf("after shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write still waits after its Raft shut down")
	}

	done := stuckFuture{ch: make(chan error, 1)}
	done.ch <- nil
	if err := (&Node{done: make(chan struct{})}).waitApplied(context.Background(), done); err != nil {
		t.Fatalf("an answered future: %v", err)
	}
}
