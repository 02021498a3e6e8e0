package node_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/manager"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
)

// TestDeposedLeaderWorkWritesNothing: a leader component that has not
// yet noticed the end of its term (here: it writes under its term's
// context with the cancellation removed) writes nothing once its manager
// has handed leadership over. Before the fence its write was forwarded
// to the new leader and accepted: an orchestrator doing so, with a plan
// made from a store lacking its own last entry, created every slot of
// that entry a second time (BENCHMARKS.md section 14).
func TestDeposedLeaderWorkWritesNothing(t *testing.T) {
	type start struct {
		ctx context.Context
		m   *manager.Manager
	}
	started := make(chan start, 16)
	c := testcluster.New(t, 3, 0, testcluster.Options{
		LeaderWork: []func(ctx context.Context, m *manager.Manager) error{
			func(ctx context.Context, m *manager.Manager) error {
				started <- start{ctx, m}
				<-ctx.Done()
				return nil
			},
		},
	})
	ctx := ctxT(t, 60*time.Second)
	var first start
	select {
	case first = <-started:
	case <-ctx.Done():
		t.Fatal("no leader work started")
	}
	late := context.WithoutCancel(first.ctx) // the term's fence, never cancelled
	probe := func(id string) *swarmpb.StoreBatch {
		return state.Batch(state.Create(&swarmpb.Config{Id: id, Name: id}))
	}
	if _, err := first.m.Raft().Apply(late, probe("probe-in-term")); err != nil {
		t.Fatalf("a write of the leader's own term: %v", err)
	}

	if err := first.m.Raft().TransferLeadership(); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	var next *manager.Manager
	testutil.Eventually(t, 20*time.Second, func() error {
		for _, mb := range c.Managers() {
			m := mb.Node.Manager()
			if term, _ := m.Raft().LeaderTerm(); term != 0 && m != first.m {
				next = m
				return nil
			}
		}
		return errors.New("no other manager leads yet")
	})
	_, err := first.m.Raft().Apply(late, probe("probe-after-term"))
	if !errors.Is(err, raft.ErrNotLeader) {
		t.Fatalf("a deposed leader's work wrote: %v, want ErrNotLeader", err)
	}
	// A write of the new leader, then a look at its store: the refused
	// write must not be there (it would precede this one in the log).
	if _, err := next.Raft().Apply(ctx, probe("probe-new-leader")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		var in, after, lead bool
		next.Store().View(func(tx state.ReadTx) {
			in, after, lead = tx.GetConfig("probe-in-term") != nil, tx.GetConfig("probe-after-term") != nil, tx.GetConfig("probe-new-leader") != nil
		})
		if after {
			return errors.New("the deposed leader's write is in the new leader's store")
		}
		if !in || !lead {
			return fmt.Errorf("the accepted writes are missing: first term %v, new leader %v", in, lead)
		}
		return nil
	})
}
