package agent

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// TestDescCache: a description goes out until a leader confirms it, is
// left out while unchanged, and goes out again when it changes, when the
// leader changes, after a refusal or a failed call, and after descRefresh.
func TestDescCache(t *testing.T) {
	d1 := &swarmpb.NodeDescription{Hostname: "h", EngineVersion: "1"}
	d2 := &swarmpb.NodeDescription{Hostname: "h", EngineVersion: "2"}
	now := time.Unix(1000, 0)
	var c descCache
	step := func(d *swarmpb.NodeDescription, addr string, current bool) *swarmpb.NodeDescription {
		now = now.Add(2 * time.Second)
		sent := c.toSend(d, addr, now)
		c.answered(sent, addr, current, now)
		return sent
	}
	if step(d1, "L1", true) == nil {
		t.Fatal("first heartbeat without a description")
	}
	if got := step(d1, "L1", true); got != nil {
		t.Fatalf("unchanged, confirmed description sent again: %v", got)
	}
	if step(d2, "L1", true) == nil {
		t.Fatal("changed description not sent")
	}
	if got := step(d2, "L1", true); got != nil {
		t.Fatalf("confirmed change sent again: %v", got)
	}
	if step(d2, "L2", true) == nil {
		t.Fatal("description not sent to a new leader")
	}
	// The leader refuses a change (its write budget): it goes out until
	// the leader says it is stored.
	if step(d1, "L2", false) == nil || step(d1, "L2", false) == nil || step(d1, "L2", true) == nil {
		t.Fatal("refused change not sent again")
	}
	if step(d1, "L2", true) != nil {
		t.Fatal("stored change sent again")
	}
	// A failed call forgets the confirmation.
	c.failed()
	if step(d1, "L2", true) == nil {
		t.Fatal("description not sent after a failed heartbeat")
	}
	// An unchanged description is still sent every descRefresh.
	now = now.Add(descRefresh)
	if step(d1, "L2", true) == nil {
		t.Fatal("description not refreshed after descRefresh")
	}
}

// descDispatcher records which heartbeats carried a description and
// answers description_current as told.
type descDispatcher struct {
	swarmpb.UnimplementedDispatcherServer
	addr    string
	mu      sync.Mutex
	carried []bool
	current bool
}

func (d *descDispatcher) Heartbeat(_ context.Context, req *swarmpb.HeartbeatRequest) (*swarmpb.HeartbeatResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.carried = append(d.carried, req.Description != nil)
	return &swarmpb.HeartbeatResponse{
		PeriodNs: int64(20 * time.Millisecond), Managers: []string{d.addr},
		Role: swarmpb.NodeRole_NODE_ROLE_WORKER, DesiredRole: swarmpb.NodeRole_NODE_ROLE_WORKER,
		DescriptionCurrent: d.current,
	}, nil
}

func (d *descDispatcher) since(i int) []bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]bool(nil), d.carried[min(i, len(d.carried)):]...)
}

// TestHeartbeatsOmitStoredDescription runs an agent against a leader that
// first stores its description (later heartbeats leave it out), then
// refuses it (every heartbeat carries it again).
func TestHeartbeatsOmitStoredDescription(t *testing.T) {
	ln := listenLoopback(t)
	d := &descDispatcher{addr: ln.Addr().String(), current: true}
	conns := serveDispatcher(t, ln, d)
	a := New(Config{NodeID: "n1", AdvertiseAddr: "127.0.0.1:1", Hostname: "h1", IngressAddr: "127.0.0.1",
		Managers: []string{d.addr}, Conns: conns, Roles: &blockingRoles{entered: make(chan Assignment, 1), release: make(chan struct{})}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.runHeartbeats(ctx) }()
	defer func() { cancel(); <-done }()

	testutil.Eventually(t, 5*time.Second, func() error {
		if got := d.since(0); len(got) < 6 {
			return fmt.Errorf("%d heartbeats", len(got))
		}
		return nil
	})
	got := d.since(0)
	if !got[0] {
		t.Fatal("the first heartbeat carried no description")
	}
	for i, c := range got[1:] {
		if c {
			t.Fatalf("heartbeat %d carried the stored, unchanged description", i+1)
		}
	}

	d.mu.Lock()
	d.current = false
	mark := len(d.carried)
	d.mu.Unlock()
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := d.since(mark); len(got) < 4 {
			return fmt.Errorf("%d heartbeats after the refusal", len(got))
		}
		return nil
	})
	// The first one after the switch may have been answered "current";
	// from the second on, each carries the description.
	for i, c := range d.since(mark)[1:] {
		if !c {
			t.Fatalf("heartbeat %d after a refusal carried no description", i+1)
		}
	}
}
