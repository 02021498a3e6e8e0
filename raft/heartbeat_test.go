package raft

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
)

// TestLeaderHeartbeatFollowsLeadership checks that only the leader runs
// with the long heartbeat timeout that spaces its heartbeats out
// (10×LeaderHeartbeat), and that a leader that hands over goes back to
// the configured timeout, which decides how fast it notices a dead leader.
func TestLeaderHeartbeatFollowsLeadership(t *testing.T) {
	timings := FastTimings()
	timings.LeaderHeartbeat = 50 * time.Millisecond
	leaderTimeout := 10 * timings.LeaderHeartbeat
	leader, follower := openPairTimings(t, timings)

	want := func(n *Node, d time.Duration) func() error {
		return func() error {
			if got := n.raftHeartbeatTimeout(); got != d {
				return fmt.Errorf("%s runs with heartbeat timeout %v, want %v", n.cfg.NodeID, got, d)
			}
			return nil
		}
	}
	testutil.Eventually(t, 10*time.Second, want(leader, leaderTimeout))
	testutil.Eventually(t, 10*time.Second, want(follower, timings.HeartbeatTimeout))

	if err := leader.TransferLeadership(); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, want(follower, leaderTimeout))
	testutil.Eventually(t, 10*time.Second, want(leader, timings.HeartbeatTimeout))
	testutil.Eventually(t, 10*time.Second, func() error {
		if ok, _ := follower.Leadership(); !ok {
			return errors.New("the follower has not taken over")
		}
		return nil
	})
}

// TestLeaderHeartbeatZeroKeepsRatio: without LeaderHeartbeat the leader
// keeps hashicorp/raft's ratio (its configured heartbeat timeout).
func TestLeaderHeartbeatZeroKeepsRatio(t *testing.T) {
	timings := FastTimings()
	leader, _ := openPairTimings(t, timings)
	if got := leader.raftHeartbeatTimeout(); got != timings.HeartbeatTimeout {
		t.Fatalf("leader runs with heartbeat timeout %v, want the configured %v", got, timings.HeartbeatTimeout)
	}
}
