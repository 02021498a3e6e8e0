package orchestrator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"github.com/raftswarm/raftswarm/state/statetest"
	"google.golang.org/protobuf/proto"
)

func TestProgressEventsWakeOnlyFollowedServices(t *testing.T) {
	task := func(node string, desired, st swarmpb.TaskState, specVersion uint64) *swarmpb.Task {
		return &swarmpb.Task{Id: "t", ServiceId: "s", NodeId: node, DesiredState: desired, SpecVersion: specVersion,
			Status: &swarmpb.TaskStatus{State: st}}
	}
	const (
		run      = swarmpb.TaskState_TASK_STATE_RUNNING
		assigned = swarmpb.TaskState_TASK_STATE_ASSIGNED
		accepted = swarmpb.TaskState_TASK_STATE_ACCEPTED
		pending  = swarmpb.TaskState_TASK_STATE_PENDING
		failed   = swarmpb.TaskState_TASK_STATE_FAILED
		shutdown = swarmpb.TaskState_TASK_STATE_SHUTDOWN
	)
	for _, c := range []struct {
		name      string
		old, new  *swarmpb.Task
		followed  bool
		wantDirty bool
		wantLazy  bool
		failed    bool // the last pass's write failed
		usable    bool // n1 was up and not drained in the last pass's view
	}{
		{"placed on a usable node", task("", run, pending, 1), task("n1", run, assigned, 1), false, false, false, false, true},
		{"placed on a usable node, followed", task("", run, pending, 1), task("n1", run, assigned, 1), true, true, false, false, true},
		{"placed on a usable node, after a failed write", task("", run, pending, 1), task("n1", run, assigned, 1), false, true, false, true, true},
		{"stopping task stopped on a usable node", task("n1", shutdown, run, 1), task("n1", shutdown, shutdown, 1), false, false, true, false, true},
		{"placed on a node, after a failed write", task("", run, pending, 1), task("n1", run, assigned, 1), false, true, false, true, false},
		{"stopping task stopped, after a failed write", task("n1", shutdown, run, 1), task("n1", shutdown, shutdown, 1), false, true, false, true, false},
		{"assigned to running", task("n1", run, assigned, 1), task("n1", run, run, 1), false, false, false, false, false},
		{"accepted to running, followed", task("n1", run, accepted, 1), task("n1", run, run, 1), true, true, false, false, false},
		{"placed on a node", task("", run, pending, 1), task("n1", run, assigned, 1), false, false, true, false, false},
		{"placed on a node, followed", task("", run, pending, 1), task("n1", run, assigned, 1), true, true, false, false, false},
		{"stopping task stopped", task("n1", shutdown, run, 1), task("n1", shutdown, shutdown, 1), false, false, true, false, false},
		{"stopping task stopped, followed", task("n1", shutdown, run, 1), task("n1", shutdown, shutdown, 1), true, true, false, false, false},
		{"stopping task unassigned", task("n1", shutdown, run, 1), task("", shutdown, shutdown, 1), false, true, false, false, false},
		{"stopping task back to running", task("n1", shutdown, shutdown, 1), task("n1", shutdown, run, 1), false, true, false, false, false},
		{"failed", task("n1", run, run, 1), task("n1", run, failed, 1), false, true, false, false, false},
		{"asked to stop", task("n1", run, run, 1), task("n1", shutdown, run, 1), false, false, true, false, false},
		{"asked to stop, followed", task("n1", run, run, 1), task("n1", shutdown, run, 1), true, true, false, false, false},
		{"asked to stop, after a failed write", task("n1", run, run, 1), task("n1", shutdown, run, 1), false, true, false, true, false},
		{"unassigned task asked to stop", task("", run, pending, 1), task("", shutdown, shutdown, 1), false, false, true, false, false},
		{"asked to run again", task("n1", shutdown, run, 1), task("n1", run, run, 1), false, true, false, false, false},
		{"moved node", task("n1", run, assigned, 1), task("n2", run, run, 1), false, true, false, false, false},
		{"new spec version", task("n1", run, assigned, 1), task("n1", run, run, 2), false, true, false, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := newOrchestrator(nil, nil, nil)
			o.follows["s"] = c.followed
			o.writeFailed = c.failed
			o.usable = map[string]bool{"n1": c.usable}
			d := map[string]bool{}
			o.markDirty(d, state.Event{Kind: state.EventUpdate, Object: c.new, Old: c.old})
			if d["s"] != c.wantDirty || o.lazy["s"] != c.wantLazy {
				t.Fatalf("dirty %v lazy %v, want %v and %v", d["s"], o.lazy["s"], c.wantDirty, c.wantLazy)
			}
		})
	}
}

// TestLazyChangesAreCoalesced: a stopping task's progress, written one
// Raft entry at a time as agents report, costs one reconciliation per
// lazyDelay, not one per entry (scaling 100,000 tasks to 0 was quadratic),
// and is still reconciled once due.
func TestLazyChangesAreCoalesced(t *testing.T) {
	st := state.New()
	raft := statetest.NewApplier(st)
	apply := func(acts ...*swarmpb.StoreAction) {
		t.Helper()
		if _, err := raft.Apply(context.Background(), state.Batch(acts...)); err != nil {
			t.Fatal(err)
		}
	}
	const n = 100
	acts := []*swarmpb.StoreAction{
		state.Create(&swarmpb.Cluster{Id: "c1", Settings: &swarmpb.ClusterSettings{TaskHistoryLimit: 5}}),
		state.Create(&swarmpb.Node{Id: "n1", Spec: &swarmpb.NodeSpec{}, Status: swarmpb.NodeStatus_NODE_STATUS_READY}),
		state.Create(&swarmpb.Service{Id: "s", Spec: spec("web", 0), SpecVersion: 1}),
	}
	for i := range n {
		acts = append(acts, state.Create(&swarmpb.Task{Id: fmt.Sprintf("t%03d", i), ServiceId: "s", Slot: uint64(i + 1), NodeId: "n1",
			SpecVersion: 1, DesiredState: swarmpb.TaskState_TASK_STATE_SHUTDOWN, Spec: spec("web", 0),
			Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}))
	}
	apply(acts...)

	var passes atomic.Int32
	o := newOrchestrator(st, raft, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.lazyWait = 300 * time.Millisecond
	o.observe = func(time.Duration) { passes.Add(1) }
	runUntilFirstPass(t, o, &passes)

	before := passes.Load()
	reportStoppedApart(st, apply, n)
	testutil.Eventually(t, 5*time.Second, func() error {
		if passes.Load() == before {
			return fmt.Errorf("the stopped tasks were never reconciled")
		}
		return nil
	})
	time.Sleep(2 * o.lazyWait) // let any due pass run
	if got := passes.Load() - before; got > 6 {
		t.Fatalf("%d passes for %d entries of stopping progress, want at most 6 (one per %v)", got, n, o.lazyWait)
	}
}

// TestLazyWaitGrowsWithPassCost: changes that may wait wait at least
// lazyPassShare times the last pass, so that when a pass is costly (it
// reads every task of a large service) the passes they cause take a
// bounded share of the orchestrator's time. Passes here take 40 ms each;
// with a fixed 10 ms wait, 60 entries of stopping progress 5 ms apart made
// a pass every 50 ms.
func TestLazyWaitGrowsWithPassCost(t *testing.T) {
	st := state.New()
	raft := statetest.NewApplier(st)
	apply := func(acts ...*swarmpb.StoreAction) {
		t.Helper()
		if _, err := raft.Apply(context.Background(), state.Batch(acts...)); err != nil {
			t.Fatal(err)
		}
	}
	const n = 60
	acts := []*swarmpb.StoreAction{
		state.Create(&swarmpb.Cluster{Id: "c1", Settings: &swarmpb.ClusterSettings{TaskHistoryLimit: 5}}),
		state.Create(&swarmpb.Node{Id: "n1", Spec: &swarmpb.NodeSpec{}, Status: swarmpb.NodeStatus_NODE_STATUS_READY}),
		state.Create(&swarmpb.Service{Id: "s", Spec: spec("web", 0), SpecVersion: 1}),
	}
	for i := range n {
		acts = append(acts, state.Create(&swarmpb.Task{Id: fmt.Sprintf("t%03d", i), ServiceId: "s", Slot: uint64(i + 1), NodeId: "n1",
			SpecVersion: 1, DesiredState: swarmpb.TaskState_TASK_STATE_SHUTDOWN, Spec: spec("web", 0),
			Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}))
	}
	apply(acts...)

	var passes atomic.Int32
	o := newOrchestrator(st, raft, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.lazyWait = 10 * time.Millisecond
	o.planning = func([]string) { time.Sleep(40 * time.Millisecond) } // a costly pass
	o.observe = func(time.Duration) { passes.Add(1) }
	runUntilFirstPass(t, o, &passes)

	before := passes.Load()
	reportStoppedApart(st, apply, n)
	// The last entry is reconciled too, once its wait is over.
	testutil.Eventually(t, 5*time.Second, func() error {
		if passes.Load() == before {
			return fmt.Errorf("the stopped tasks were never reconciled")
		}
		return nil
	})
	time.Sleep(lazyPassShare * 40 * time.Millisecond) // let any due pass run
	if got := passes.Load() - before; got > 3 {
		t.Fatalf("%d passes of 40 ms for %d entries over about %v, want at most 3 (a wait of %d passes)", got, n, n*5*time.Millisecond, lazyPassShare)
	}
}

// TestNodeBackWakesOnlyGlobalServices: a node coming back up (or no longer
// drained) changes no replicated service's decision, so it wakes only the
// global services; losing a node, a drain, a new or removed node, or a
// change of labels or role still makes every service dirty.
func TestNodeBackWakesOnlyGlobalServices(t *testing.T) {
	node := func(st swarmpb.NodeStatus, av swarmpb.NodeAvailability, labels map[string]string) *swarmpb.Node {
		return &swarmpb.Node{Id: "n1", Status: st, Spec: &swarmpb.NodeSpec{Availability: av, Labels: labels}}
	}
	const (
		ready  = swarmpb.NodeStatus_NODE_STATUS_READY
		down   = swarmpb.NodeStatus_NODE_STATUS_DOWN
		active = swarmpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE
		drain  = swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN
		pause  = swarmpb.NodeAvailability_NODE_AVAILABILITY_PAUSE
	)
	for _, c := range []struct {
		name     string
		kind     state.EventKind
		old, new *swarmpb.Node
		want     string // "*", "global" or ""
	}{
		{"back up", state.EventUpdate, node(down, active, nil), node(ready, active, nil), "global"},
		{"no longer drained", state.EventUpdate, node(ready, drain, nil), node(ready, active, nil), "global"},
		{"down", state.EventUpdate, node(ready, active, nil), node(down, active, nil), "*"},
		{"drained", state.EventUpdate, node(ready, active, nil), node(ready, drain, nil), "*"},
		{"paused", state.EventUpdate, node(ready, active, nil), node(ready, pause, nil), "*"},
		{"labels", state.EventUpdate, node(down, active, nil), node(ready, active, map[string]string{"a": "b"}), "*"},
		{"new", state.EventCreate, nil, node(ready, active, nil), "*"},
		{"removed", state.EventDelete, nil, node(ready, active, nil), "*"},
		{"heartbeat only", state.EventUpdate, node(ready, active, nil), node(ready, active, nil), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := newOrchestrator(nil, nil, nil)
			o.global["g"] = true
			d := map[string]bool{}
			ev := state.Event{Kind: c.kind, Object: c.new}
			if c.old != nil {
				ev.Old = c.old
			}
			o.markDirty(d, ev)
			got := ""
			switch {
			case d["*"]:
				got = "*"
			case d["g"] && len(d) == 1:
				got = "global"
			case len(d) > 0:
				got = fmt.Sprint(d)
			}
			if got != c.want {
				t.Fatalf("dirty %q, want %q", got, c.want)
			}
		})
	}
}

// runUntilFirstPass runs o until the test ends and returns once its first
// pass (counted in passes by o.observe) is over.
func runUntilFirstPass(t *testing.T, o *Orchestrator, passes *atomic.Int32) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = o.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(t, 5*time.Second, func() error {
		if passes.Load() == 0 {
			return fmt.Errorf("no first pass")
		}
		return nil
	})
}

// reportStoppedApart has tasks t000..t(n-1) report SHUTDOWN as their
// agents would, one entry each, 5 ms apart.
func reportStoppedApart(st *state.Store, apply func(...*swarmpb.StoreAction), n int) {
	for i := range n {
		var c *swarmpb.Task
		st.View(func(tx state.ReadTx) { c = proto.Clone(tx.GetTask(fmt.Sprintf("t%03d", i))).(*swarmpb.Task) })
		c.Status = &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_SHUTDOWN}
		apply(state.Update(c))
		time.Sleep(5 * time.Millisecond) // agents report apart: one entry each
	}
}

// TestOwnShutdownsWakeNothing: the shutdowns a scale to 0 writes come back
// as one event per task; they are the orchestrator's own decisions and
// cost no pass of their own. Counted as changes, 25,000 of them were taken
// 10,000 events at a time, each time a pass over every task of the
// service (at 100,000 tasks, ten passes of the whole service in a scale
// to 0).
func TestOwnShutdownsWakeNothing(t *testing.T) {
	const n = 25_000
	st, raft := oneNodeService(t, swarmpb.NodeStatus_NODE_STATUS_READY, n, n)
	var passes, passesOfS atomic.Int32 // all passes; those reconciling s
	var sentinel atomic.Bool           // a pass reconciled s2
	o := newOrchestrator(st, raft, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.lazyWait = time.Hour // no clean-up pass in the test's time
	o.planning = func(items []string) {
		passes.Add(1)
		if slices.Contains(items, "s") {
			passesOfS.Add(1)
		}
		if slices.Contains(items, "s2") {
			sentinel.Store(true)
		}
	}
	o.observe = func(time.Duration) {}
	runUntilFirstPass(t, o, &passes)
	before := passesOfS.Load()

	var svc *swarmpb.Service
	st.View(func(tx state.ReadTx) { svc = proto.Clone(tx.GetService("s")).(*swarmpb.Service) })
	svc.Spec.Replicas = 0
	applyAll(t, raft, []*swarmpb.StoreAction{state.Update(svc)})
	testutil.Eventually(t, 30*time.Second, func() error {
		if _, live := taskCounts(st, "s"); live != 0 {
			return fmt.Errorf("%d tasks still live", live)
		}
		return nil
	})
	// A change to another service comes after every shutdown's event:
	// once a pass has reconciled it, the shutdowns' events were all taken
	// and the passes they caused have run.
	applyAll(t, raft, []*swarmpb.StoreAction{state.Create(&swarmpb.Service{Id: "s2", Spec: spec("other", 0), SpecVersion: 1})})
	testutil.Eventually(t, 30*time.Second, func() error {
		if !sentinel.Load() {
			return fmt.Errorf("s2 not reconciled yet")
		}
		return nil
	})
	if got := passesOfS.Load() - before; got != 1 {
		t.Fatalf("%d passes over s for its scale to 0 of %d tasks, want 1", got, n)
	}
}

// TestOwnCreatesAndDeletesWakeNothing: only the orchestrator creates and
// deletes tasks, so their events are its own decisions and wake no pass,
// unless a rolling update waits on the service's tasks or the last write
// failed.
func TestOwnCreatesAndDeletesWakeNothing(t *testing.T) {
	task := &swarmpb.Task{Id: "t", ServiceId: "s", DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
		Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_PENDING}}
	for _, c := range []struct {
		name      string
		kind      state.EventKind
		followed  bool
		failed    bool
		wantDirty bool
	}{
		{"created", state.EventCreate, false, false, false},
		{"deleted", state.EventDelete, false, false, false},
		{"created, followed", state.EventCreate, true, false, true},
		{"deleted, followed", state.EventDelete, true, false, true},
		{"created, after a failed write", state.EventCreate, false, true, true},
		{"deleted, after a failed write", state.EventDelete, false, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := newOrchestrator(nil, nil, nil)
			o.follows["s"] = c.followed
			o.writeFailed = c.failed
			d := map[string]bool{}
			o.markDirty(d, state.Event{Kind: c.kind, Object: task})
			if d["s"] != c.wantDirty || o.lazy["s"] {
				t.Fatalf("dirty %v lazy %v, want dirty %v and not lazy", d["s"], o.lazy["s"], c.wantDirty)
			}
		})
	}
}
