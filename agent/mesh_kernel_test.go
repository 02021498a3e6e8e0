package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/fake"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/mesh"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// stubForwarder records the rules the agent's mesh applies.
type stubForwarder struct {
	mu      sync.Mutex
	applied int
	removed int
}

func (f *stubForwarder) Apply(context.Context, mesh.KernelRules) error {
	f.mu.Lock()
	f.applied++
	f.mu.Unlock()
	return nil
}

func (f *stubForwarder) Remove(context.Context) error {
	f.mu.Lock()
	f.removed++
	f.mu.Unlock()
	return nil
}

func stubForwarderFunc(t *testing.T, fn func(context.Context, string) (mesh.Forwarder, error)) {
	old := newForwarder
	newForwarder = fn
	t.Cleanup(func() { newForwarder = old })
}

func waitMeshPath(t *testing.T, d *netDispatcher, path, reason string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		desc := d.lastDesc()
		if desc.GetMeshPath() != path || !strings.Contains(desc.GetMeshPathReason(), reason) {
			return fmt.Errorf("heartbeat: mesh path %q (%q), want %q (%q)", desc.GetMeshPath(), desc.GetMeshPathReason(), path, reason)
		}
		return nil
	})
}

// The node reports the mesh's path: the kernel once a table is applied
// through the forwarder, the userspace proxy with the reason when the
// forwarder cannot be made or the configuration says so.
func TestMeshPathReported(t *testing.T) {
	view := &swarmpb.EndpointsMessage{Ports: []*swarmpb.ServiceEndpoint{{Protocol: "tcp", PublishedPort: 1}}}
	fe := func(string) (exec.Executor, error) { return fake.New("n1"), nil }
	cfg := Config{NodeID: "n1", AdvertiseAddr: "127.0.7.1:1", Hostname: "h1", IngressAddr: "127.0.7.1", Executor: fe}

	t.Run("kernel", func(t *testing.T) {
		f := &stubForwarder{}
		stubForwarderFunc(t, func(_ context.Context, id string) (mesh.Forwarder, error) {
			if id != "n1" {
				t.Errorf("forwarder for node %q", id)
			}
			return f, nil
		})
		d := &netDispatcher{view: &swarmpb.EndpointsMessage{}}
		c := cfg
		c.MeshPath = MeshPathAuto
		runAgent(t, d, c)
		waitMeshPath(t, d, mesh.PathKernel, "")
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.removed < 1 || f.applied < 1 {
			t.Fatalf("forwarder removed %d, applied %d times: want stale rules removed, then a table applied", f.removed, f.applied)
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		stubForwarderFunc(t, func(context.Context, string) (mesh.Forwarder, error) {
			return nil, errors.New("kernel forwarding unavailable (simulated)")
		})
		d := &netDispatcher{view: view}
		c := cfg
		c.MeshPath = MeshPathAuto
		runAgent(t, d, c)
		waitMeshPath(t, d, mesh.PathUserspace, "simulated")
	})
	t.Run("userspace by configuration", func(t *testing.T) {
		stubForwarderFunc(t, func(context.Context, string) (mesh.Forwarder, error) {
			t.Error("forwarder made with --mesh-path=userspace")
			return nil, errors.New("unexpected")
		})
		removed := make(chan string, 1)
		old := removeStaleRules
		removeStaleRules = func(_ context.Context, id string) error { removed <- id; return nil }
		t.Cleanup(func() { removeStaleRules = old })
		d := &netDispatcher{view: view}
		c := cfg
		c.MeshPath = MeshPathUserspace
		runAgent(t, d, c)
		waitMeshPath(t, d, mesh.PathUserspace, "userspace")
		select {
		case id := <-removed:
			if id != "n1" {
				t.Fatalf("stale rules of node %q removed", id)
			}
		default:
			t.Fatal("stale kernel rules not removed on the userspace path")
		}
	})
}

// blockingForwarder's Apply waits until the test releases it, as an nft run
// does on a loaded host.
type blockingForwarder struct {
	entered chan struct{} // a value for every Apply that started
	release chan struct{} // closed: every Apply returns
}

func (f *blockingForwarder) Apply(ctx context.Context, _ mesh.KernelRules) error {
	select {
	case f.entered <- struct{}{}:
	default:
	}
	select {
	case <-f.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *blockingForwarder) Remove(context.Context) error { return nil }

// The node's heartbeats go on while its mesh programs the kernel. They
// carry the mesh's path, and once waited for the nft run in progress: on a
// loaded host long enough for the leader to mark the node Down and replace
// its tasks, over and over (the discovery end-to-end test with
// --mesh-path auto).
func TestHeartbeatsWhileKernelRulesApply(t *testing.T) {
	f := &blockingForwarder{entered: make(chan struct{}, 1), release: make(chan struct{})}
	stubForwarderFunc(t, func(context.Context, string) (mesh.Forwarder, error) { return f, nil })
	d := &netDispatcher{view: &swarmpb.EndpointsMessage{}}
	fe := func(string) (exec.Executor, error) { return fake.New("n1"), nil }
	a := runAgent(t, d, Config{NodeID: "n1", AdvertiseAddr: "127.0.7.1:1", Hostname: "h1", IngressAddr: "127.0.7.1",
		Executor: fe, MeshPath: MeshPathAuto})
	t.Cleanup(func() { close(f.release) }) // runs before the agent stops: its mesh's Close waits for the Apply
	select {
	case <-f.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent's mesh never applied kernel rules")
	}
	d.mu.Lock()
	before := d.beats
	d.mu.Unlock()
	testutil.Eventually(t, 5*time.Second, func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.beats < before+5 {
			return fmt.Errorf("%d heartbeats since the kernel rules started being applied, want 5 (period 20 ms)", d.beats-before)
		}
		return nil
	})

	// The metrics scrape reads the mesh's counters meanwhile.
	stats := make(chan Stats, 1)
	go func() { stats <- a.Stats() }()
	select {
	case s := <-stats:
		if s.Mesh == nil {
			t.Fatal("no mesh counters while the kernel rules are applied")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the agent's Stats waited for the kernel rules being applied")
	}
}

// flakyForwarder fails its first failures Applies, as nft does when it
// times out on a loaded host.
type flakyForwarder struct {
	stubForwarder
	failures int // under mu
}

func (f *flakyForwarder) Apply(ctx context.Context, rs mesh.KernelRules) error {
	f.mu.Lock()
	if f.failures > 0 {
		f.failures--
		f.mu.Unlock()
		return errors.New("nft timed out (simulated)")
	}
	f.mu.Unlock()
	return f.stubForwarder.Apply(ctx, rs)
}

// A failed kernel rule update is retried with the same table: the node
// goes back to the kernel path without waiting for the endpoint table to
// change (the mesh removes the old rules on failure, so until then every
// connection takes the userspace proxy).
func TestMeshKernelRetried(t *testing.T) {
	f := &flakyForwarder{failures: 1}
	stubForwarderFunc(t, func(context.Context, string) (mesh.Forwarder, error) { return f, nil })
	view := &swarmpb.EndpointsMessage{Ports: []*swarmpb.ServiceEndpoint{{Protocol: "tcp", PublishedPort: uint32(freeTCPPort(t, "127.0.7.1")),
		Backends: []*swarmpb.Backend{{TaskId: "t1", Addr: "127.0.7.2:1000"}}}}}
	d := &netDispatcher{view: view}
	fe := func(string) (exec.Executor, error) { return fake.New("n1"), nil }
	runAgent(t, d, Config{NodeID: "n1", AdvertiseAddr: "127.0.7.1:1", Hostname: "h1", IngressAddr: "127.0.7.1",
		Executor: fe, MeshPath: MeshPathAuto})
	waitMeshPath(t, d, mesh.PathKernel, "")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures != 0 || f.applied != 1 || f.removed < 2 {
		t.Fatalf("forwarder: %d failures left, applied %d, removed %d; want the failure, its removal, then one apply", f.failures, f.applied, f.removed)
	}
}

// A node stopped while its kernel path is still being set up (a daemon
// restarted after a kill and stopped at once) removes the rules its earlier
// run left: the setup that would have removed them was cut short, and
// bench/failover left a table behind each run.
func TestStoppedDuringKernelSetupLeavesNoRules(t *testing.T) {
	entered := make(chan struct{}, 1)
	stubForwarderFunc(t, func(ctx context.Context, _ string) (mesh.Forwarder, error) {
		entered <- struct{}{}
		<-ctx.Done() // the nft check outlives the node
		return nil, ctx.Err()
	})
	removed := make(chan string, 2)
	old := removeStaleRules
	removeStaleRules = func(_ context.Context, id string) error { removed <- id; return nil }
	t.Cleanup(func() { removeStaleRules = old })
	fe := func(string) (exec.Executor, error) { return fake.New("n1"), nil }
	t.Run("run", func(t *testing.T) {
		runAgent(t, &netDispatcher{view: &swarmpb.EndpointsMessage{}}, Config{NodeID: "n1", AdvertiseAddr: "127.0.7.1:1",
			Hostname: "h1", IngressAddr: "127.0.7.1", Executor: fe, MeshPath: MeshPathAuto})
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the kernel path's setup never started")
		}
	}) // the agent stops here, its setup still waiting
	select {
	case id := <-removed:
		if id != "n1" {
			t.Fatalf("stale rules of node %q removed", id)
		}
	default:
		t.Fatal("a node stopped during its kernel setup left its earlier run's rules in place")
	}
}
