package raft

import (
	"context"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/state"
)

// A request resent with the same ID through Raft (a new attempt, a new
// context) applies once and succeeds; a failed write is not counted, so
// the request's next write reuses its number; a new request applies.
func TestRequestIDAppliesOnceThroughRaft(t *testing.T) {
	st := state.New()
	n := openNode(t, t.TempDir(), "127.0.0.1:0", st)
	ctx := ctxT(t, 30*time.Second)
	attempt := func() context.Context { return WithRequestID(ctx, "req-1") }

	if _, err := n.Apply(attempt(), createBatch(nodeObj(1))); err != nil {
		t.Fatal(err)
	}
	// The resend builds its write anew (another object, here).
	if _, err := n.Apply(attempt(), createBatch(nodeObj(2))); err != nil {
		t.Fatalf("resend: %v", err)
	}
	if got := countNodes(st); got != 1 {
		t.Fatalf("%d nodes after a resend, want 1", got)
	}
	r, ok := st.AppliedRequest(FirstWriteID("req-1"))
	if !ok || r.ObjectId != "node-001" {
		t.Fatalf("applied request %v %v", r, ok)
	}

	// Within one attempt: a refused write, then a successful one, both
	// the request's first write; then its second.
	a := WithRequestID(ctx, "req-2")
	if _, err := n.Apply(a, createBatch(nodeObj(1))); err == nil {
		t.Fatal("a duplicate create was accepted")
	}
	if _, err := n.Apply(a, createBatch(nodeObj(3))); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(a, createBatch(nodeObj(4))); err != nil {
		t.Fatal(err)
	}
	if got := countNodes(st); got != 3 {
		t.Fatalf("%d nodes, want 3", got)
	}
	if r, ok := st.AppliedRequest("req-2/2"); !ok || r.ObjectId != "node-004" {
		t.Fatalf("second write of req-2: %v %v", r, ok)
	}
	// Without an ID nothing is remembered or skipped.
	if _, err := n.Apply(ctx, createBatch(nodeObj(5))); err != nil {
		t.Fatal(err)
	}
	if got := countNodes(st); got != 4 {
		t.Fatalf("%d nodes, want 4", got)
	}
}
