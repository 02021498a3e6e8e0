package raft

import (
	"time"

	hraft "github.com/hashicorp/raft"
)

// leaderHeartbeat sets the heartbeat timeout hashicorp/raft runs with for
// the state this node is in now, so that the leader heartbeats every
// Timings.LeaderHeartbeat while followers keep Timings.HeartbeatTimeout.
//
// hashicorp/raft derives both from one setting: a follower starts an
// election after HeartbeatTimeout without contact, and the leader
// heartbeats every HeartbeatTimeout/10 to /5. That ratio sends 10 to 20
// heartbeats a second to each follower with our 500 ms timeout, which was
// most of what an idle cluster cost (BENCHMARKS.md, "An idle cluster").
// The failover time depends only on the followers' value, so the leader
// runs with a heartbeat timeout of 10×LeaderHeartbeat (which no one but
// its heartbeat loops read while it leads; the election timeout goes up
// with it, as the library requires, and bounds only a leadership transfer
// then) and every other state with the configured ones. ReloadConfig is
// the library's way to change them live; lowering them also resets a
// running follower or candidate timer, so a leader that steps down
// watches for the next leader with the short timeout at once.
//
// It is called on every Raft state change and reads the current state, so
// an observation dropped or handled late is corrected by the next one.
func (n *Node) leaderHeartbeat() {
	t := n.cfg.timings()
	if t.LeaderHeartbeat <= 0 {
		return
	}
	hb, election := t.HeartbeatTimeout, t.ElectionTimeout
	if n.raft.State() == hraft.Leader {
		// hashicorp/raft wants ElectionTimeout >= HeartbeatTimeout; a
		// leader reads it only to bound a leadership transfer.
		hb = max(10*t.LeaderHeartbeat, hb)
		election = max(election, hb)
	}
	rc := n.raft.ReloadableConfig()
	if rc.HeartbeatTimeout == hb && rc.ElectionTimeout == election {
		return
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout = hb, election
	if err := n.raft.ReloadConfig(rc); err != nil {
		// Only an invalid configuration fails, and this one was valid
		// at start; the node keeps working with the timeout it had.
		n.cfg.Logger.Error("cannot change the raft heartbeat timeout", "to", hb, "err", err)
	}
}

// raftHeartbeatTimeout is the heartbeat timeout hashicorp/raft runs with
// now (for tests).
func (n *Node) raftHeartbeatTimeout() time.Duration {
	return n.raft.ReloadableConfig().HeartbeatTimeout
}
