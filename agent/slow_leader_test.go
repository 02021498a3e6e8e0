package agent

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/fake"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// slowLeader leads: it answers heartbeats, slowly once armed (past the
// agent's call timeout), and keeps task sessions open, counting them.
type slowLeader struct {
	swarmpb.UnimplementedDispatcherServer
	addrs    []string // this one first, then the follower
	slow     atomic.Int32
	beats    atomic.Int32
	sessions atomic.Int32
}

func (d *slowLeader) Heartbeat(ctx context.Context, _ *swarmpb.HeartbeatRequest) (*swarmpb.HeartbeatResponse, error) {
	d.beats.Add(1)
	if d.slow.Add(-1) >= 0 {
		<-ctx.Done() // past the caller's timeout
		return nil, ctx.Err()
	}
	return &swarmpb.HeartbeatResponse{PeriodNs: int64(100 * time.Millisecond), Managers: d.addrs,
		DesiredRole: swarmpb.NodeRole_NODE_ROLE_WORKER, Role: swarmpb.NodeRole_NODE_ROLE_WORKER}, nil
}

func (d *slowLeader) Session(_ *swarmpb.SessionRequest, stream swarmpb.Dispatcher_SessionServer) error {
	d.sessions.Add(1)
	if err := stream.Send(&swarmpb.SessionMessage{Kind: swarmpb.SessionMessage_KIND_FULL, Managers: d.addrs}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// namingFollower is a follower: it refuses every call and names the
// leader, counting the calls.
type namingFollower struct {
	swarmpb.UnimplementedDispatcherServer
	leader          string
	hold            time.Duration // how long a heartbeat waits for its answer
	beats, sessions atomic.Int32
}

func (f *namingFollower) refuse(ctx context.Context) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs(LeaderAddrKey, f.leader))
	return status.Error(codes.FailedPrecondition, "this manager is not the leader")
}

func (f *namingFollower) Heartbeat(ctx context.Context, _ *swarmpb.HeartbeatRequest) (*swarmpb.HeartbeatResponse, error) {
	f.beats.Add(1)
	// A follower reached through a reconnection storm answers late.
	select {
	case <-time.After(f.hold):
	case <-ctx.Done():
	}
	return nil, f.refuse(ctx)
}

func (f *namingFollower) Session(_ *swarmpb.SessionRequest, stream swarmpb.Dispatcher_SessionServer) error {
	f.sessions.Add(1)
	return f.refuse(stream.Context())
}

// TestSlowLeaderKeepsTheNode: a heartbeat to the leader that times out
// has the agent ask a follower who leads; told it is still the same
// leader, the agent calls it again, and its other loops (task session,
// status reports) are never pointed elsewhere. Before, the first timeout
// pointed them all at the follower until it answered: at 1,000 nodes,
// status reports dialled the followers all at once, timed out in their
// backlog and TLS handshakes, and moved on around the managers, while the
// heartbeats failed the same way long enough for live nodes to be marked
// Down.
func TestSlowLeaderKeepsTheNode(t *testing.T) {
	t.Run("the follower names it", func(t *testing.T) { testSlowLeaderKeepsTheNode(t, 300*time.Millisecond) })
	// Past the agent's 1.5 s call timeout: no answer from the follower
	// either, which at 1,000 nodes was the followers' TLS handshakes.
	t.Run("the follower does not answer in time", func(t *testing.T) { testSlowLeaderKeepsTheNode(t, 2*time.Second) })
}

func testSlowLeaderKeepsTheNode(t *testing.T, followerHold time.Duration) {
	lnL, lnF := listenLoopback(t), listenLoopback(t)
	leader := &slowLeader{addrs: []string{lnL.Addr().String(), lnF.Addr().String()}}
	follower := &namingFollower{leader: lnL.Addr().String(), hold: followerHold}
	conns := serveDispatcher(t, lnL, leader)
	serveDispatcher(t, lnF, follower)
	a := New(Config{NodeID: "n1", AdvertiseAddr: "127.0.0.1:1", Hostname: "h1", IngressAddr: "127.0.0.1",
		Managers: leader.addrs, Conns: conns, Roles: noRoles{},
		Executor: func(id string) (exec.Executor, error) { return fake.New(id), nil }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	testutil.Eventually(t, 10*time.Second, func() error {
		if leader.sessions.Load() < 1 || leader.beats.Load() < 2 {
			return fmt.Errorf("%d sessions and %d heartbeats on the leader", leader.sessions.Load(), leader.beats.Load())
		}
		return nil
	})
	// Where the node's loops (task session, status reports, endpoint
	// stream) would go, sampled throughout.
	var strayed atomic.Bool
	sctx, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sctx.Err() == nil {
			if addr, _ := a.leaders.get(); addr == lnF.Addr().String() {
				strayed.Store(true)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	leader.slow.Store(1)
	before := leader.beats.Load()
	// The slow call times out (1.5 s), the follower is asked, the leader
	// called again: two more heartbeats taken by the leader.
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := leader.beats.Load() - before; got < 3 {
			return fmt.Errorf("%d heartbeats on the leader since it was slow", got)
		}
		return nil
	})
	stopSampling()
	<-sampled
	if strayed.Load() {
		t.Errorf("the node's loops were pointed at the follower after one slow heartbeat; the leader was only slow")
	}
	if n := follower.beats.Load(); n != 1 {
		t.Errorf("the follower was asked %d times, want once", n)
	}
	if n := follower.sessions.Load(); n != 0 {
		t.Errorf("the task session moved to the follower %d times; the leader was only slow", n)
	}
	if n := leader.sessions.Load(); n != 1 {
		t.Errorf("%d task sessions with the leader, want the first one kept", n)
	}
}
