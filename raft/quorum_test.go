package raft

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/raftswarm/raftswarm/state"
)

// blockingPinger never answers: each Ping waits for its context and sends
// the context's cause on causes.
type blockingPinger struct {
	started chan struct{}
	causes  chan error
}

func (p *blockingPinger) Ping(ctx context.Context, addr string) error {
	p.started <- struct{}{}
	<-ctx.Done()
	p.causes <- context.Cause(ctx)
	return ctx.Err()
}

// openThreeVoterFollower opens a node whose configuration names it and two
// managers that do not exist: it never leads, but Members lists 3 voters.
func openThreeVoterFollower(t *testing.T, p Pinger) *Node {
	t.Helper()
	layer := listen(t, "127.0.0.1:0")
	n, err := Open(Config{
		NodeID: "n1", Addr: layer.Addr().String(), Dir: t.TempDir(), Stream: layer,
		Store: state.New(), Timings: FastTimings(), NoSync: true, Pinger: p,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	f := n.raft.BootstrapCluster(hraft.Configuration{Servers: []hraft.Server{
		{ID: "n1", Address: hraft.ServerAddress(layer.Addr().String()), Suffrage: hraft.Voter},
		{ID: "n2", Address: "127.0.0.1:1", Suffrage: hraft.Voter},
		{ID: "n3", Address: "127.0.0.1:2", Suffrage: hraft.Voter},
	}})
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestQuorumErrorStopsWithCaller checks that the pings counting reachable
// managers end when the caller's context does, not on their own timer, and
// that a caller who gave up gets its own error back.
func TestQuorumErrorStopsWithCaller(t *testing.T) {
	p := &blockingPinger{started: make(chan struct{}, 2), causes: make(chan error, 2)}
	n := openThreeVoterFollower(t, p)
	errGaveUp := errors.New("caller gave up")
	ctx, cancel := context.WithCancelCause(context.Background())
	res := make(chan error, 1)
	go func() { res <- n.quorumError(ctx) }()
	<-p.started
	<-p.started
	cancel(errGaveUp)
	for range 2 {
		if cause := <-p.causes; !errors.Is(cause, errGaveUp) {
			t.Fatalf("ping ended by %v, want the caller's cancellation", cause)
		}
	}
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("quorumError after the caller gave up = %v, want context.Canceled", err)
	}

	// Already given up: no ping at all, and the caller's error back.
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := n.quorumOr(done, errGaveUp); !errors.Is(err, errGaveUp) {
		t.Fatalf("quorumOr with an ended context = %v, want the caller's error", err)
	}
	select {
	case <-p.started:
		t.Fatal("quorumOr pinged after the caller gave up")
	default:
	}
}

// TestLeaderBarrierRetried checks that a leader whose term barrier fails
// retries it and then reports leadership, instead of never starting its
// leader work.
func TestLeaderBarrierRetried(t *testing.T) {
	layer := listen(t, "127.0.0.1:0")
	var failures atomic.Int32
	cfg := Config{
		NodeID: "n1", Addr: layer.Addr().String(), Dir: t.TempDir(), Stream: layer,
		Store: state.New(), Timings: FastTimings(), NoSync: true,
	}
	var n *Node
	cfg.barrier = func(timeout time.Duration) error {
		if failures.Add(1) <= 2 {
			return errors.New("injected barrier failure")
		}
		return n.raft.Barrier(timeout).Error()
	}
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	if err := n.BootstrapSelf(); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, n, 10*time.Second)
	if got := failures.Load(); got < 3 {
		t.Fatalf("barrier called %d times, want the 2 failures retried", got)
	}
}
