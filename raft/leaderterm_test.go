package raft

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
)

// nodeForwarder forwards to whichever of nodes has the address, as the
// managers' Forward RPC does.
type nodeForwarder struct{ nodes []*Node }

func (f nodeForwarder) Forward(ctx context.Context, addr string, cmd []byte) (uint64, error) {
	for _, n := range f.nodes {
		if n.cfg.Addr == addr {
			return n.ApplyCommand(ctx, cmd)
		}
	}
	return 0, fmt.Errorf("no node at %s", addr)
}

// TestLeaderTermWritesAreFenced: leader work (WithLeaderTerm) writes
// only on its own node while that node leads in the work's term. The
// duplicate tasks of BENCHMARKS.md section 14 came from an orchestrator
// that kept running past its term and whose writes, planned from a store
// lacking the old term's last entry, were forwarded to the new leader or
// written in its node's next term: each is refused here, and nothing of
// it reaches the store.
func TestLeaderTermWritesAreFenced(t *testing.T) {
	a, b := openPairTimings(t, FastTimings())
	fw := nodeForwarder{nodes: []*Node{a, b}}
	a.cfg.Forwarder, b.cfg.Forwarder = fw, fw
	term, _ := a.LeaderTerm()
	if term == 0 {
		t.Fatal("the leader reports no leader term")
	}
	if ft, _ := b.LeaderTerm(); ft != 0 {
		t.Fatalf("the follower reports leader term %d", ft)
	}
	ctx := ctxT(t, 10*time.Second)
	work := WithLeaderTerm(ctx, term)
	written := 0
	mustWrite := func(n *Node, ctx context.Context) {
		t.Helper()
		written++
		if _, err := n.Apply(ctx, createBatch(nodeObj(written))); err != nil {
			t.Fatalf("write %d on %s: %v", written, n.cfg.NodeID, err)
		}
	}
	mustRefuse := func(n *Node, ctx context.Context, why string) {
		t.Helper()
		_, err := n.Apply(ctx, createBatch(nodeObj(1000+written)))
		if err == nil {
			t.Fatalf("%s: a leader-work write on %s was accepted", why, n.cfg.NodeID)
		}
		if ctx.Err() == nil && !errors.Is(err, ErrNotLeader) {
			t.Fatalf("%s: %v, want ErrNotLeader", why, err)
		}
	}

	mustWrite(a, work)
	mustWrite(b, ctx) // an ordinary write on the follower is forwarded
	mustRefuse(b, work, "on a follower")

	// The leader hands over: its work of the old term writes nothing,
	// neither forwarded nor, once it leads again, in its new term.
	if err := a.TransferLeadership(); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if bt, _ := b.LeaderTerm(); bt == 0 {
			return errors.New("the follower has not taken over")
		}
		return nil
	})
	mustRefuse(a, work, "after handing over")
	bterm, _ := b.LeaderTerm()
	mustWrite(b, WithLeaderTerm(ctx, bterm))
	if err := b.TransferLeadership(); err != nil {
		t.Fatalf("transfer leadership back: %v", err)
	}
	var aterm uint64
	testutil.Eventually(t, 10*time.Second, func() error {
		if aterm, _ = a.LeaderTerm(); aterm == 0 {
			return errors.New("the first leader has not taken over again")
		}
		return nil
	})
	if aterm <= term {
		t.Fatalf("leader term %d after two hand-overs, want more than %d", aterm, term)
	}
	mustRefuse(a, work, "in a later term of the same node")
	mustWrite(a, WithLeaderTerm(ctx, aterm))

	// Work whose context ended writes nothing either.
	ended, cancel := context.WithCancel(WithLeaderTerm(ctx, aterm))
	cancel()
	mustRefuse(a, ended, "after the work's context ended")

	testutil.Eventually(t, 10*time.Second, func() error {
		for _, n := range []*Node{a, b} {
			if got := countNodes(n.cfg.Store); got != written {
				return fmt.Errorf("%s holds %d objects, want the %d accepted writes", n.cfg.NodeID, got, written)
			}
		}
		return nil
	})
}
