package api

import (
	"context"
	"sync"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// electionRaft is a follower during an election: no leader known until
// elect names one, which signals Leadership's channel as raft.Node does.
type electionRaft struct {
	storeRaft
	mu      sync.Mutex
	leader  string
	changed chan struct{}
	looks   int  // Leadership calls
	silent  bool // the known leader has gone quiet
}

func newElectionRaft(st *state.Store) *electionRaft {
	return &electionRaft{storeRaft: storeRaft{store: st}, changed: make(chan struct{})}
}

func (r *electionRaft) IsLeader() bool { return false }
func (r *electionRaft) LeaderSilent() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.silent
}
func (r *electionRaft) Leader() (string, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leader == "" {
		return "", ""
	}
	return "l", r.leader
}
func (r *electionRaft) Leadership() (bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.looks++
	return false, r.changed
}
func (r *electionRaft) elect(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leader, r.silent = addr, false
	close(r.changed)
	r.changed = make(chan struct{})
}
func (r *electionRaft) lookCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.looks
}

// TestHeartbeatWaitsOutElection: a heartbeat reaching a follower while no
// leader is known (or the one known has gone silent) is held until one is elected, then refused with that
// leader known (named in the trailer), instead of being refused at once
// with no leader to name, which sent every node of the cluster into
// growing backoff for the length of the election.
func TestHeartbeatWaitsOutElection(t *testing.T) {
	st := state.New()
	for _, tc := range []struct {
		name   string
		leader string // known before the election
	}{{"no leader known", ""}, {"the known leader silent", "10.0.0.1:2377"}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newElectionRaft(st)
			r.leader, r.silent = tc.leader, tc.leader != ""
			d := &Dispatcher{Store: st, Raft: r}
			heldUntilElected(t, r, func(ctx context.Context) error {
				_, err := d.Heartbeat(ctx, &swarmpb.HeartbeatRequest{})
				return err
			})
		})
	}
}

// TestStatusReportWaitsOutElection: so do a worker's status reports,
// whose retries otherwise back off to seconds through the election.
func TestStatusReportWaitsOutElection(t *testing.T) {
	st := state.New()
	r := newElectionRaft(st)
	d := &Dispatcher{Store: st, Raft: r}
	heldUntilElected(t, r, func(ctx context.Context) error {
		_, err := d.UpdateTaskStatus(ctx, &swarmpb.UpdateTaskStatusRequest{})
		return err
	})
}

func heldUntilElected(t *testing.T, r *electionRaft, call func(context.Context) error) {
	type answer struct {
		err    error
		leader string // known to the follower when it answered
	}
	got := make(chan answer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(nodeCtx("n1"), 10*time.Second)
		defer cancel()
		err := call(ctx)
		_, addr := r.Leader()
		got <- answer{err, addr}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for r.lookCount() == 0 {
		select {
		case a := <-got:
			t.Fatalf("answered while no leader was known (%v), want the call held until one is", a.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the heartbeat neither waited for a leader nor answered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.elect("10.0.0.2:2377")
	select {
	case a := <-got:
		if status.Code(a.err) != codes.FailedPrecondition || a.leader != "10.0.0.2:2377" {
			t.Fatalf("after the election: err %v, leader known %q; want FailedPrecondition naming 10.0.0.2:2377", a.err, a.leader)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held heartbeat was not answered once a leader was elected")
	}
}

// TestHeartbeatLeaderWaitBounded: with no leader ever known, the held
// heartbeat is answered by half its deadline, so the node still has time
// to try another manager.
func TestHeartbeatLeaderWaitBounded(t *testing.T) {
	st := state.New()
	d := &Dispatcher{Store: st, Raft: newElectionRaft(st)}
	ctx, cancel := context.WithTimeout(nodeCtx("n1"), 600*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := d.Heartbeat(ctx, &swarmpb.HeartbeatRequest{})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("err %v, want FailedPrecondition", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("answered after %v, want by half the 600ms deadline", took)
	}
}
