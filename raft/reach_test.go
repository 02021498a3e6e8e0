package raft

import (
	"errors"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/state"
)

// openPair starts two managers bootstrapped with the same two-voter
// configuration and returns the one that leads and the other's ID.
func openPair(t *testing.T) (leader *Node, follower string) {
	t.Helper()
	leader, f := openPairTimings(t, FastTimings())
	return leader, f.cfg.NodeID
}

// openPairTimings is openPair with the given timings; it returns both nodes.
func openPairTimings(t *testing.T, timings Timings) (leader, follower *Node) {
	t.Helper()
	layers := []tcpLayer{listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")}
	ids := []string{"n1", "n2"}
	conf := hraft.Configuration{}
	for i, l := range layers {
		conf.Servers = append(conf.Servers, hraft.Server{ID: hraft.ServerID(ids[i]), Address: hraft.ServerAddress(l.Addr().String()), Suffrage: hraft.Voter})
	}
	var nodes []*Node
	for i, l := range layers {
		n, err := Open(Config{
			NodeID: ids[i], Addr: l.Addr().String(), Dir: t.TempDir(), Stream: l,
			Store: state.New(), Timings: timings, NoSync: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Shutdown() })
		if err := n.raft.BootstrapCluster(conf).Error(); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	testutil.Eventually(t, 15*time.Second, func() error {
		for i, n := range nodes {
			if ok, _ := n.Leadership(); ok {
				leader, follower = n, nodes[1-i]
				return nil
			}
		}
		return errors.New("no leader yet")
	})
	return leader, follower
}

// TestUnreachableMarkClearsWithoutResumedObservation reproduces the chaos
// finding: a follower marked after a failed heartbeat stayed Unreachable
// for good when the ResumedHeartbeatObservation that clears the mark was
// missed. The mark must clear once the follower answers again.
func TestUnreachableMarkClearsWithoutResumedObservation(t *testing.T) {
	leader, follower := openPair(t)
	testutil.Eventually(t, 10*time.Second, func() error {
		if leader.Unreachable(follower) {
			return errors.New("healthy follower reported unreachable")
		}
		return nil
	})
	// A failed heartbeat whose resumption is never observed.
	leader.obsCh <- hraft.Observation{Data: hraft.FailedHeartbeatObservation{PeerID: hraft.ServerID(follower)}}
	testutil.Eventually(t, 10*time.Second, func() error {
		leader.mu.Lock()
		_, marked := leader.unreachable[follower] // only Unreachable deletes it here
		leader.mu.Unlock()
		if !marked {
			return errors.New("failed heartbeat not observed yet")
		}
		return nil
	})
	testutil.Eventually(t, 10*time.Second, func() error {
		if leader.Unreachable(follower) {
			return errors.New("follower still unreachable although it answers heartbeats")
		}
		return nil
	})
}

// TestUnreachableFromLastContact checks the marks' complements: a member
// silent for longer than staleContact is unreachable without any mark,
// and a change of Raft state forgets earlier marks.
func TestUnreachableFromLastContact(t *testing.T) {
	n := openNode(t, t.TempDir(), "127.0.0.1:0", state.New())
	if n.Unreachable("n1") {
		t.Fatal("a leader reports itself unreachable")
	}
	n.mu.Lock()
	n.leaderSince = time.Now().Add(-time.Hour)
	n.contact["n2"] = time.Now().Add(-time.Hour)
	n.mu.Unlock()
	if !n.Unreachable("n2") {
		t.Fatal("member silent for an hour reported reachable")
	}
	n.recordContact("n2")
	if n.Unreachable("n2") {
		t.Fatal("member that just answered reported unreachable")
	}
	n.mu.Lock()
	n.unreachable["n3"] = time.Now()
	n.mu.Unlock()
	if !n.Unreachable("n3") {
		t.Fatal("marked member reported reachable")
	}
	n.resetReachability(true)
	if n.Unreachable("n3") {
		t.Fatal("mark survived a change of leadership")
	}
}
