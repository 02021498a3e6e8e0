package raft

import (
	"testing"
	"time"
)

// minLeaseMargin is how late a follower's answer to a heartbeat may be
// (round trip and scheduling on a loaded host) before the leader's lease
// check counts the follower out. With one manager of three down, as after
// a failover, that one follower is the quorum: a single answer later than
// the margin makes the leader step down. The 150 ms heartbeat (every 150
// to 300 ms) and 400 ms lease left 100 ms, and at 100,000 tasks on 1,000
// nodes the new leader stepped down twice in 20 s ("failed to contact
// quorum", 454 and 531 ms), each time restarting its resume. The lease
// is now 500 ms, the most hashicorp/raft allows (no longer than the
// followers' heartbeat timeout), for 200 ms of margin; a 125 ms heartbeat
// would give 250 ms but costs a fifth more heartbeats on an idle cluster,
// whose CPU is at its 2 % budget (BENCHMARKS.md, "An idle cluster").
const minLeaseMargin = 200 * time.Millisecond

// TestDefaultTimingsLeaseMargin: the lease leaves minLeaseMargin beyond
// the longest wait between two heartbeats (2×LeaderHeartbeat), and stays
// within hashicorp/raft's bound (no longer than the followers' heartbeat
// timeout, which is what decides failover and is not changed by it).
func TestDefaultTimingsLeaseMargin(t *testing.T) {
	tm := DefaultTimings()
	if margin := tm.LeaderLeaseTimeout - 2*tm.LeaderHeartbeat; margin < minLeaseMargin {
		t.Errorf("lease %v, heartbeats up to %v apart: a margin of %v for a follower's answer, want at least %v",
			tm.LeaderLeaseTimeout, 2*tm.LeaderHeartbeat, margin, minLeaseMargin)
	}
	if tm.LeaderLeaseTimeout > tm.HeartbeatTimeout {
		t.Errorf("lease %v longer than the heartbeat timeout %v (hashicorp/raft refuses it)", tm.LeaderLeaseTimeout, tm.HeartbeatTimeout)
	}
	if tm.HeartbeatTimeout != 500*time.Millisecond {
		t.Errorf("the followers' heartbeat timeout %v changed: the failover median (bench/failover) must be measured again", tm.HeartbeatTimeout)
	}
}
