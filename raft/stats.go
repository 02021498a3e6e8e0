package raft

import (
	"time"

	hraft "github.com/hashicorp/raft"
)

// Stats is this replica's view of Raft, for metrics (read at scrape time).
type Stats struct {
	State        string // "Leader", "Follower", "Candidate", "Shutdown"
	Term         uint64
	LastIndex    uint64
	CommitIndex  uint64
	AppliedIndex uint64
	// LastContact is the time since the leader was last heard from; 0 on
	// the leader itself, -1 when never.
	LastContact time.Duration
	// LeaderChanges counts the times this replica saw a new leader
	// elected (a leader ID different from the last one seen).
	LeaderChanges uint64
	HasLeader     bool
}

// Stats returns the replica's Raft figures. It takes no Raft lock of the
// log's hot path: every field is an atomic read of hashicorp/raft.
func (n *Node) Stats() Stats {
	s := Stats{
		State:         n.raft.State().String(),
		Term:          n.raft.CurrentTerm(),
		LastIndex:     n.raft.LastIndex(),
		CommitIndex:   n.raft.CommitIndex(),
		AppliedIndex:  n.raft.AppliedIndex(),
		LeaderChanges: n.leaderChanges.Load(),
	}
	_, id := n.raft.LeaderWithID()
	s.HasLeader = id != ""
	switch last := n.raft.LastContact(); {
	case n.raft.State() == hraft.Leader:
	case last.IsZero():
		s.LastContact = -1
	default:
		s.LastContact = time.Since(last)
	}
	return s
}

// countLeader counts a LeaderObservation naming a new leader; called only
// from the observe goroutine.
func (n *Node) countLeader(o hraft.LeaderObservation) {
	if o.LeaderID == "" || o.LeaderID == n.lastLeader {
		return
	}
	n.lastLeader = o.LeaderID
	n.leaderChanges.Add(1)
}
