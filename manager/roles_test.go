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
		watchRoles(ctx, s, time.Hour, time.Hour, func() bool { calls.Add(1); return false })
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
		watchRoles(ctx, s, 10*time.Millisecond, time.Hour, func() bool {
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
