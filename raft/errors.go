package raft

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrNotLeader is returned by leader-only calls made on a follower.
	ErrNotLeader = errors.New("this manager is not the leader")
	// ErrUnknownCommand is the deterministic result of applying a command
	// type (or payload version) this binary does not understand.
	ErrUnknownCommand = errors.New("unknown raft command type")
	// ErrShutdown is returned once the node has been shut down.
	ErrShutdown = errors.New("raft node is shut down")
	// ErrQuorumLost is wrapped by QuorumError.
	ErrQuorumLost = errors.New("the cluster has lost quorum")
)

// QuorumError says how far the cluster is from quorum, so that a user can
// act: bring managers back, or recover with init --force-new-cluster.
type QuorumError struct {
	Reachable int // managers that answered, this one included
	Total     int // voters in the configuration
}

// Needed is the majority of Total.
func (e *QuorumError) Needed() int { return e.Total/2 + 1 }

func (e *QuorumError) Error() string {
	return fmt.Sprintf("%v: %d of %d managers reachable, %d needed; restart the unreachable managers, or run 'swarmctl init --force-new-cluster' on a surviving manager if they are gone for good",
		ErrQuorumLost, e.Reachable, e.Total, e.Needed())
}

func (e *QuorumError) Unwrap() error { return ErrQuorumLost }

// ErrUnresponsive is wrapped by UnresponsiveError.
var ErrUnresponsive = errors.New("the new manager did not answer over raft")

// UnresponsiveError says that a manager being added did not answer over
// Raft in time, and was not made a voter.
type UnresponsiveError struct {
	ID, Addr string
	Wait     time.Duration
	Last     error // the last probe's outcome
}

func (e *UnresponsiveError) Error() string {
	msg := fmt.Sprintf("manager %s at %s did not answer over Raft within %s; check that it is reachable at %s from the other managers (its advertise address; gRPC and Raft share that TCP port) and that no firewall blocks it",
		e.ID, e.Addr, e.Wait, e.Addr)
	if e.Last != nil {
		msg += " (last attempt: " + e.Last.Error() + ")"
	}
	return msg
}

func (e *UnresponsiveError) Unwrap() error { return ErrUnresponsive }
