package api

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// silentLeader is a leader cut off without its connection closing: it
// takes every call and never answers.
type silentLeader struct {
	swarmpb.UnimplementedControlServer
	entered chan struct{}
}

func (s *silentLeader) GetCluster(ctx context.Context, _ *swarmpb.GetClusterRequest) (*swarmpb.GetClusterResponse, error) {
	s.entered <- struct{}{}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (s *silentLeader) ServiceLogs(_ *swarmpb.ServiceLogsRequest, stream swarmpb.Control_ServiceLogsServer) error {
	s.entered <- struct{}{}
	<-stream.Context().Done()
	return stream.Context().Err()
}

type answeringLeader struct {
	swarmpb.UnimplementedControlServer
}

func (answeringLeader) GetCluster(context.Context, *swarmpb.GetClusterRequest) (*swarmpb.GetClusterResponse, error) {
	return &swarmpb.GetClusterResponse{Cluster: &swarmpb.ClusterInfo{Id: "new-leader"}}, nil
}

// switchRouter routes to one target until moveTo, which changes the
// target and closes the leader-change channel, as a manager's Raft does.
type switchRouter struct {
	mu      sync.Mutex
	conn    *grpc.ClientConn
	srv     swarmpb.ControlServer
	err     error
	changed chan struct{}
}

func (r *switchRouter) RouteControl(context.Context) (swarmpb.ControlServer, *grpc.ClientConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv, r.conn, r.err
}

func (r *switchRouter) LeaderChanged() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *switchRouter) moveTo(srv swarmpb.ControlServer, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.srv, r.conn, r.err = srv, nil, err
	close(r.changed)
	r.changed = make(chan struct{})
}

func dialSilentLeader(t *testing.T) (*silentLeader, *grpc.ClientConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	leader := &silentLeader{entered: make(chan struct{}, 10)}
	gs := grpc.NewServer()
	swarmpb.RegisterControlServer(gs, leader)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return leader, conn
}

// A call relayed to a leader that never answers moves to the new leader
// once this manager learns of it, well within the caller's deadline.
// Before, the relay waited on the old leader until the deadline (seen 15 s
// in the chaos bed).
func TestRelayMovesOffSilentLeader(t *testing.T) {
	leader, conn := dialSilentLeader(t)
	r := &switchRouter{conn: conn, changed: make(chan struct{})}
	p := &ControlProxy{Router: r}
	go func() {
		<-leader.entered
		r.moveTo(answeringLeader{}, nil)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := p.GetCluster(ctx, &swarmpb.GetClusterRequest{})
	if err != nil {
		t.Fatalf("relay after the leader changed: %v", err)
	}
	if resp.GetCluster().GetId() != "new-leader" {
		t.Fatalf("served by %q, want the new leader", resp.GetCluster().GetId())
	}
}

// When this manager loses the leader and finds no quorum, the relay stops
// waiting on the silent leader and returns the quorum error.
func TestRelayReturnsQuorumErrorWhenLeaderLost(t *testing.T) {
	leader, conn := dialSilentLeader(t)
	r := &switchRouter{conn: conn, changed: make(chan struct{})}
	p := &ControlProxy{Router: r}
	go func() {
		<-leader.entered
		r.moveTo(nil, &raft.QuorumError{Reachable: 1, Total: 3})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := p.GetCluster(ctx, &swarmpb.GetClusterRequest{})
	wantCode(t, err, codes.Unavailable, raft.ErrQuorumLost.Error())
}

// relayedLogStream is the proxy's side of a client's log stream.
type relayedLogStream struct {
	grpc.ServerStream
	ctx  context.Context
	msgs []*swarmpb.ServiceLogsMessage
}

func (s *relayedLogStream) Context() context.Context { return s.ctx }
func (s *relayedLogStream) Send(m *swarmpb.ServiceLogsMessage) error {
	s.msgs = append(s.msgs, m)
	return nil
}

// A log stream relayed to a silent leader, nothing sent yet, moves on
// when the leader changes: here to none, and the quorum error.
func TestRelayLogsLeavesSilentLeader(t *testing.T) {
	leader, conn := dialSilentLeader(t)
	r := &switchRouter{conn: conn, changed: make(chan struct{})}
	p := &ControlProxy{Router: r}
	go func() {
		<-leader.entered
		r.moveTo(nil, &raft.QuorumError{Reachable: 1, Total: 3})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.ServiceLogs(&swarmpb.ServiceLogsRequest{}, &relayedLogStream{ctx: ctx})
	wantCode(t, err, codes.Unavailable, raft.ErrQuorumLost.Error())
}
