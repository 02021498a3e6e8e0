package manager

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// TestRoleWatchSkipsTaskEvents checks that task events do not make the role
// manager rescan the nodes, while a node event does.
func TestRoleWatchSkipsTaskEvents(t *testing.T) {
	s := state.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchRoles(ctx, s, time.Hour, time.Hour, func([]string) bool { calls.Add(1); return false })
	}()
	testutil.Eventually(t, 5*time.Second, func() error {
		if calls.Load() < 1 {
			return fmt.Errorf("no initial reconcile")
		}
		return nil
	})
	idx := uint64(0)
	apply := func(a *swarmpb.StoreAction) {
		idx++
		if _, err := s.ApplyBatch(idx, int64(idx), state.Batch(a)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		apply(state.Create(&swarmpb.Task{Id: fmt.Sprintf("t%d", i), ServiceId: "s"}))
	}
	// A node event after the tasks: once it is reconciled, every task event
	// before it has been read.
	apply(state.Create(&swarmpb.Node{Id: "n1"}))
	testutil.Eventually(t, 5*time.Second, func() error {
		if calls.Load() < 2 {
			return fmt.Errorf("node event not reconciled")
		}
		return nil
	})
	cancel()
	<-done
	if got := calls.Load(); got != 2 {
		t.Fatalf("reconciled %d times for 50 task events and 1 node event, want 2 (start, node)", got)
	}
}

// TestRoleWatchRetriesOnlyFailures checks that an idle role manager does
// not wake up until the sweep, while a reconcile that reports a failed
// step is run again after the retry delay until it succeeds.
func TestRoleWatchRetriesOnlyFailures(t *testing.T) {
	s := state.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	fail := atomic.Int64{}
	fail.Store(3) // the first three reconciles fail
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchRoles(ctx, s, 10*time.Millisecond, time.Hour, func([]string) bool {
			calls.Add(1)
			return fail.Add(-1) >= 0
		})
	}()
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := calls.Load(); n < 4 {
			return fmt.Errorf("%d reconciles, want the 3 failures retried and a 4th that succeeds", n)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // a quiet spell: nothing may run in it
	cancel()
	<-done
	if n := calls.Load(); n != 4 {
		t.Fatalf("reconciled %d times, want 4 (3 failures retried, then nothing until the sweep)", n)
	}
}

// TestRoleWatchLooksOnlyAtChangedNodes guards against the role manager
// rescanning every node on each node event, which made a cluster's
// formation O(nodes^2): with 1,000 nodes in the store, a node joining
// and its status changing are reconciled by naming those nodes alone;
// only the start (and the tick, and a lost watch) rescans every node.
func TestRoleWatchLooksOnlyAtChangedNodes(t *testing.T) {
	s := state.New()
	idx := uint64(0)
	apply := func(actions ...*swarmpb.StoreAction) {
		idx++
		if _, err := s.ApplyBatch(idx, int64(idx), state.Batch(actions...)); err != nil {
			t.Fatal(err)
		}
	}
	var existing []*swarmpb.StoreAction
	for i := range 1000 {
		existing = append(existing, state.Create(&swarmpb.Node{Id: fmt.Sprintf("n%04d", i)}))
	}
	apply(existing...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := make(chan []string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchRoles(ctx, s, time.Hour, time.Hour, func(nodes []string) bool { calls <- nodes; return false })
	}()
	next := func() []string {
		select {
		case n := <-calls:
			return n
		case <-time.After(5 * time.Second):
			t.Fatal("no reconcile within 5s")
			return nil
		}
	}
	if got := next(); got != nil {
		t.Fatalf("first reconcile named %d nodes, want every node (nil)", len(got))
	}
	apply(state.Create(&swarmpb.Node{Id: "joined"}))
	looked := map[string]bool{}
	for len(looked) == 0 || !looked["joined"] {
		got := next()
		if got == nil {
			t.Fatal("a node joining made the role manager rescan every node")
		}
		for _, id := range got {
			looked[id] = true
		}
	}
	var n *swarmpb.Node
	s.View(func(tx state.ReadTx) { n = proto.Clone(tx.GetNode("joined")).(*swarmpb.Node) })
	n.Status = swarmpb.NodeStatus_NODE_STATUS_READY
	apply(state.Update(n))
	got := next()
	if len(got) != 1 || got[0] != "joined" {
		t.Fatalf("a status change of node joined reconciled %v, want [joined]", got)
	}
	cancel()
	<-done
}
