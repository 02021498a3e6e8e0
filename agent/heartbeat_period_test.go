package agent

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// slowDispatcher answers heartbeats delay after taking them and records
// when it took each.
type slowDispatcher struct {
	swarmpb.UnimplementedDispatcherServer
	addr          string
	period, delay time.Duration

	mu  sync.Mutex
	got []time.Time
}

func (d *slowDispatcher) Heartbeat(ctx context.Context, _ *swarmpb.HeartbeatRequest) (*swarmpb.HeartbeatResponse, error) {
	d.mu.Lock()
	d.got = append(d.got, time.Now())
	d.mu.Unlock()
	select {
	case <-time.After(d.delay):
	case <-ctx.Done():
	}
	return &swarmpb.HeartbeatResponse{PeriodNs: int64(d.period), Managers: []string{d.addr},
		DesiredRole: swarmpb.NodeRole_NODE_ROLE_WORKER, Role: swarmpb.NodeRole_NODE_ROLE_WORKER}, nil
}

type noRoles struct{}

func (noRoles) ReconcileRole(context.Context, Assignment) {}

// TestHeartbeatPeriodRunsFromCallStart: the leader's deadline for a node
// runs from when it took the node's last heartbeat, so the agent's period
// must too. With answers 250 ms slow and a 300 ms period, heartbeats used
// to reach the leader every 505-550 ms (answer, then the period), past a
// deadline whose slack is what a loaded leader has left; now every ~300 ms.
func TestHeartbeatPeriodRunsFromCallStart(t *testing.T) {
	ln := listenLoopback(t)
	d := &slowDispatcher{addr: ln.Addr().String(), period: 300 * time.Millisecond, delay: 250 * time.Millisecond}
	conns := serveDispatcher(t, ln, d)
	a := New(Config{NodeID: "n1", AdvertiseAddr: "127.0.0.1:1", Hostname: "h1", IngressAddr: "127.0.0.1",
		Managers: []string{d.addr}, Conns: conns, Roles: noRoles{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	testutil.Eventually(t, 10*time.Second, func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if len(d.got) < 7 {
			return fmt.Errorf("%d heartbeats taken, want 7", len(d.got))
		}
		return nil
	})
	d.mu.Lock()
	var gaps []time.Duration
	// The first heartbeat is at the agent's default period; from the
	// second on the dispatcher's period applies.
	for i := 2; i < len(d.got); i++ {
		gaps = append(gaps, d.got[i].Sub(d.got[i-1]))
	}
	d.mu.Unlock()
	slices.Sort(gaps)
	if med := gaps[len(gaps)/2]; med > d.period+d.delay/2 {
		t.Fatalf("heartbeats taken every %v (median; all %v) with a %v period and answers %v slow; want about the period",
			med, gaps, d.period, d.delay)
	}
}
