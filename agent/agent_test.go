package agent

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// fakeDispatcher answers heartbeats as a leader that wants the node
// promoted; its other calls are unimplemented.
type fakeDispatcher struct {
	swarmpb.UnimplementedDispatcherServer
	addr       string
	heartbeats atomic.Int64
}

func (d *fakeDispatcher) Heartbeat(context.Context, *swarmpb.HeartbeatRequest) (*swarmpb.HeartbeatResponse, error) {
	d.heartbeats.Add(1)
	return &swarmpb.HeartbeatResponse{
		PeriodNs:    int64(20 * time.Millisecond),
		DesiredRole: swarmpb.NodeRole_NODE_ROLE_MANAGER,
		Role:        swarmpb.NodeRole_NODE_ROLE_WORKER,
		Managers:    []string{d.addr},
	}, nil
}

// insecureConns dials without TLS, one connection per address.
type insecureConns struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// listenLoopback is a listener on a free loopback port.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serveDispatcher serves d on ln until the test ends and returns the
// connections an agent reaches it with (closed at the end too, after the
// test's own deferred calls and later cleanups have stopped its agent).
func serveDispatcher(t *testing.T, ln net.Listener, d swarmpb.DispatcherServer) *insecureConns {
	t.Helper()
	srv := grpc.NewServer()
	swarmpb.RegisterDispatcherServer(srv, d)
	go func() { _ = srv.Serve(ln) }()
	conns := &insecureConns{conns: map[string]*grpc.ClientConn{}}
	t.Cleanup(func() {
		conns.close()
		srv.Stop()
	})
	return conns
}

func (c *insecureConns) Conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cc
	return cc, nil
}

func (c *insecureConns) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cc := range c.conns {
		cc.Close()
	}
}

// blockingRoles is a role change that does not end until released, like a
// promotion waiting for the leader to reach the node over Raft.
type blockingRoles struct {
	entered  chan Assignment
	release  chan struct{}
	calls    atomic.Int32
	inFlight atomic.Int32
	overlap  atomic.Bool
}

func (r *blockingRoles) ReconcileRole(ctx context.Context, a Assignment) {
	r.calls.Add(1)
	if r.inFlight.Add(1) > 1 {
		r.overlap.Store(true)
	}
	defer r.inFlight.Add(-1)
	select {
	case r.entered <- a:
	default:
	}
	select {
	case <-r.release:
	case <-ctx.Done():
	}
}

func TestHeartbeatsContinueDuringRoleChange(t *testing.T) {
	ln := listenLoopback(t)
	d := &fakeDispatcher{addr: ln.Addr().String()}
	conns := serveDispatcher(t, ln, d)

	roles := &blockingRoles{entered: make(chan Assignment, 1), release: make(chan struct{})}
	a := New(Config{NodeID: "n1", AdvertiseAddr: "127.0.0.1:1", Hostname: "h1", IngressAddr: "127.0.0.1",
		Managers: []string{d.addr}, Conns: conns, Roles: roles})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	var as Assignment
	testutil.Eventually(t, 5*time.Second, func() error {
		select {
		case as = <-roles.entered:
			return nil
		default:
			return fmt.Errorf("no role change started after %d heartbeats", d.heartbeats.Load())
		}
	})
	if as.DesiredRole != swarmpb.NodeRole_NODE_ROLE_MANAGER || as.Role != swarmpb.NodeRole_NODE_ROLE_WORKER || len(as.Managers) != 1 {
		t.Fatalf("assignment = %+v, want desired manager, recorded worker, one manager", as)
	}
	// The role change blocks; the heartbeats (every 20 ms) go on.
	start := d.heartbeats.Load()
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := d.heartbeats.Load() - start; got < 10 {
			return fmt.Errorf("%d heartbeats while the role change was in progress, want 10", got)
		}
		return nil
	})
	if n := roles.calls.Load(); n != 1 {
		t.Fatalf("%d role changes started while the first was in progress, want 1", n)
	}
	close(roles.release)
	// Later heartbeats start the next reconciliation, never two at once.
	testutil.Eventually(t, 5*time.Second, func() error {
		if roles.calls.Load() < 3 {
			return fmt.Errorf("no further reconciliation after the first")
		}
		return nil
	})
	if roles.overlap.Load() {
		t.Fatal("two role changes ran at once")
	}
}
