package orchestrator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/identity"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	schedloop "github.com/raftswarm/raftswarm/scheduler/loop"
	"github.com/raftswarm/raftswarm/state"
	"github.com/raftswarm/raftswarm/state/statetest"
	"google.golang.org/protobuf/proto"
)

// memRaft applies batches straight to a store: Raft without the network.
type memRaft = statetest.Applier

// harness runs the orchestrator and scheduler over a memRaft, with a
// simulated agent per node that starts assigned tasks and stops the ones
// asked to stop.
type harness struct {
	t      *testing.T
	st     *state.Store
	raft   *memRaft
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	failNext map[string]int32 // service name -> exit code for its next started task

	passLimit int // the orchestrator's tasks per pass; 0: the default
}

func newHarness(t *testing.T, nodes ...string) *harness {
	return newHarnessLimit(t, 0, nodes...)
}

func newHarnessLimit(t *testing.T, passLimit int, nodes ...string) *harness {
	st := state.New()
	h := &harness{t: t, st: st, raft: statetest.NewApplier(st), failNext: map[string]int32{}, passLimit: passLimit}
	h.apply(state.Create(&swarmpb.Cluster{Id: "c1", Settings: &swarmpb.ClusterSettings{TaskHistoryLimit: 5}}))
	for _, n := range nodes {
		h.addNode(n)
	}
	h.start()
	agentsDone := make(chan struct{})
	t.Cleanup(func() { close(agentsDone); h.stop() })
	go h.agents(agentsDone)
	return h
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan struct{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var wg sync.WaitGroup
	wg.Add(2)
	o := newOrchestrator(h.st, h.raft, log)
	// As in a cluster whose managers are all upgraded: the orchestrator's
	// shutdowns are desired-state patches.
	o.desiredPatches = func() bool { return true }
	if h.passLimit > 0 {
		o.passLimit = h.passLimit
	}
	go func() { defer wg.Done(); _ = o.run(ctx) }()
	go func() { defer wg.Done(); _ = schedloop.Run(ctx, h.st, h.raft, log) }()
	go func() { wg.Wait(); close(h.done) }()
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
		h.cancel = nil
	}
}

func (h *harness) apply(acts ...*swarmpb.StoreAction) {
	h.t.Helper()
	if _, err := h.raft.Apply(context.Background(), state.Batch(acts...)); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) addNode(id string) {
	h.apply(state.Create(&swarmpb.Node{Id: id, Spec: &swarmpb.NodeSpec{}, Status: swarmpb.NodeStatus_NODE_STATUS_READY,
		Description: &swarmpb.NodeDescription{Hostname: id, Os: "linux", Arch: "amd64"}}))
}

func (h *harness) updateNode(id string, fn func(*swarmpb.Node)) {
	h.t.Helper()
	testutil.Eventually(h.t, 5*time.Second, func() error {
		var n *swarmpb.Node
		h.st.View(func(tx state.ReadTx) { n = proto.Clone(tx.GetNode(id)).(*swarmpb.Node) })
		fn(n)
		_, err := h.raft.Apply(context.Background(), state.Batch(state.Update(n)))
		return err
	})
}

// agents plays every node's agent: assigned tasks start (or fail when
// asked to), tasks asked to stop stop. Down nodes do nothing.
func (h *harness) agents(done chan struct{}) {
	events, cancel := h.st.Watch()
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-tick.C:
		}
		h.agentPass()
	}
}

func (h *harness) agentPass() {
	var acts []*swarmpb.StoreAction
	h.mu.Lock()
	h.st.View(func(tx state.ReadTx) {
		for _, t := range tx.ListTasks() {
			n := tx.GetNode(t.NodeId)
			if n == nil || n.Status != swarmpb.NodeStatus_NODE_STATUS_READY {
				continue
			}
			c := proto.Clone(t).(*swarmpb.Task)
			switch {
			case t.DesiredState > swarmpb.TaskState_TASK_STATE_RUNNING && t.Status.State < swarmpb.TaskState_TASK_STATE_COMPLETE && t.Status.State >= swarmpb.TaskState_TASK_STATE_ASSIGNED:
				c.Status = &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_SHUTDOWN, Timestamp: time.Now().UnixNano()}
			case t.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING && t.Status.State == swarmpb.TaskState_TASK_STATE_ASSIGNED:
				if code, ok := h.failNext[t.ServiceName]; ok {
					delete(h.failNext, t.ServiceName)
					c.Status = &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_FAILED, ExitCode: code, Err: fmt.Sprintf("task: non-zero exit (%d)", code), Timestamp: time.Now().UnixNano()}
				} else {
					c.Status = &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING, Timestamp: time.Now().UnixNano()}
				}
			default:
				continue
			}
			acts = append(acts, state.Update(c))
		}
	})
	h.mu.Unlock()
	if len(acts) > 0 {
		_, _ = h.raft.Apply(context.Background(), state.Batch(acts...)) // a conflict is retried next pass
	}
}

func (h *harness) failNextTask(service string, code int32) {
	h.mu.Lock()
	h.failNext[service] = code
	h.mu.Unlock()
}

func (h *harness) createService(spec *swarmpb.ServiceSpec) string {
	id := identity.NewID()
	h.apply(state.Create(&swarmpb.Service{Id: id, Spec: spec, SpecVersion: 1}))
	return id
}

func (h *harness) service(id string) *swarmpb.Service {
	var s *swarmpb.Service
	h.st.View(func(tx state.ReadTx) { s = tx.GetService(id) })
	return s
}

func (h *harness) updateService(id string, fn func(*swarmpb.Service)) {
	h.t.Helper()
	testutil.Eventually(h.t, 5*time.Second, func() error {
		s := proto.Clone(h.service(id)).(*swarmpb.Service)
		fn(s)
		_, err := h.raft.Apply(context.Background(), state.Batch(state.Update(s)))
		return err
	})
}

// running returns node -> count of running tasks with desired RUNNING.
func (h *harness) running(svcID string) (map[string]int, int) {
	out := map[string]int{}
	total := 0
	h.st.View(func(tx state.ReadTx) {
		for _, t := range tx.TasksByService(svcID) {
			if t.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING && t.Status.State == swarmpb.TaskState_TASK_STATE_RUNNING {
				out[t.NodeId]++
				total++
			}
		}
	})
	return out, total
}

// live returns the tasks with desired state RUNNING.
func (h *harness) live(svcID string) []*swarmpb.Task {
	var out []*swarmpb.Task
	h.st.View(func(tx state.ReadTx) {
		for _, t := range tx.TasksByService(svcID) {
			if t.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING {
				out = append(out, t)
			}
		}
	})
	return out
}

// waitConverged waits until exactly n tasks run, no other task is live,
// and the spread matches want (node -> count) when given.
func (h *harness) waitConverged(svcID string, n int, want ...map[string]int) map[string]int {
	h.t.Helper()
	var byNode map[string]int
	testutil.Eventually(h.t, 10*time.Second, func() error {
		var total int
		byNode, total = h.running(svcID)
		if live := len(h.live(svcID)); total != n || live != n {
			return fmt.Errorf("running %d, live %d, want %d (%v)", total, live, n, byNode)
		}
		for _, w := range want {
			for node, c := range w {
				if byNode[node] != c {
					return fmt.Errorf("spread %v, want %v", byNode, w)
				}
			}
		}
		return nil
	})
	return byNode
}

func spec(name string, replicas uint64) *swarmpb.ServiceSpec {
	return &swarmpb.ServiceSpec{Name: name, Replicas: replicas,
		Container: &swarmpb.ContainerSpec{Image: "demo:v1"},
		Restart:   &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_ANY},
		Update:    &swarmpb.UpdateConfig{Parallelism: 1}}
}

func cloneTask(t *swarmpb.Task) *swarmpb.Task            { return proto.Clone(t).(*swarmpb.Task) }
func updateAct(o any) *swarmpb.StoreAction               { return state.Update(o) }
func deleteAct(o any) *swarmpb.StoreAction               { return state.Delete(o) }
func batch(a []*swarmpb.StoreAction) *swarmpb.StoreBatch { return state.Batch(a...) }
