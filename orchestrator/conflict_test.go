package orchestrator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"github.com/raftswarm/raftswarm/state/statetest"
)

// refuseFirst refuses its first write as a conflict (as an agent's status
// report landing between a pass's read and its write does) and applies
// the others.
type refuseFirst struct {
	*statetest.Applier
	mu      sync.Mutex
	calls   int
	refused int // actions in the refused entry
}

func (r *refuseFirst) Apply(ctx context.Context, b *swarmpb.StoreBatch) (uint64, error) {
	r.mu.Lock()
	r.calls++
	first := r.calls == 1
	if first {
		r.refused = len(b.GetActions())
	}
	r.mu.Unlock()
	if first {
		return 0, fmt.Errorf("apply batch, action 0: update task: %w", state.ErrConflict)
	}
	return r.Applier.Apply(ctx, b)
}

// TestConflictingEntryDoesNotStopTheOthers: a pass whose changes take
// several Raft entries writes every entry that still holds when one of
// them conflicts, and writes no creation that pass. Scaling 5,000 running
// tasks to 0 is three entries; the first to reach Raft is refused.
func TestConflictingEntryDoesNotStopTheOthers(t *testing.T) {
	const n = 5000
	st, apply := oneNodeService(t, swarmpb.NodeStatus_NODE_STATUS_READY, 0, n)

	r := &refuseFirst{Applier: apply}
	o := newOrchestrator(st, r, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.reconcile(context.Background(), nil)
	if !o.writeFailed {
		t.Fatal("a refused entry did not mark the pass's writes failed")
	}
	stopping := 0
	st.View(func(tx state.ReadTx) {
		for _, tk := range tx.TasksByService("s") {
			if tk.DesiredState > swarmpb.TaskState_TASK_STATE_RUNNING {
				stopping++
			}
		}
	})
	if r.calls != 3 || stopping != n-r.refused {
		t.Fatalf("%d of %d tasks asked to stop after one of %d entries (%d actions) was refused, want 3 entries and %d (every other entry written)",
			stopping, n, r.calls, r.refused, n-r.refused)
	}
}

// inFlight holds each write until another is in flight beside it (or a
// deadline passes) and records how many were in flight at once.
type inFlight struct {
	*statetest.Applier
	mu      sync.Mutex
	cur     int
	most    int
	another chan struct{} // closed when two are in flight
}

func (f *inFlight) Apply(ctx context.Context, b *swarmpb.StoreBatch) (uint64, error) {
	f.mu.Lock()
	f.cur++
	f.most = max(f.most, f.cur)
	if f.cur == 2 {
		close(f.another)
	}
	f.mu.Unlock()
	select {
	case <-f.another:
	case <-time.After(2 * time.Second):
	}
	defer func() { f.mu.Lock(); f.cur--; f.mu.Unlock() }()
	return f.Applier.Apply(ctx, b)
}

// TestWriteKeepsEntriesInFlight: the entries of one write go to Raft
// together (up to writesInFlight), so that Raft commits them as one batch
// instead of waiting on each in turn. Scaling 5,000 tasks to 0 is three
// entries.
func TestWriteKeepsEntriesInFlight(t *testing.T) {
	const n = 5000
	st, apply := oneNodeService(t, swarmpb.NodeStatus_NODE_STATUS_READY, 0, n)
	f := &inFlight{Applier: apply, another: make(chan struct{})}
	o := newOrchestrator(st, f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.reconcile(context.Background(), nil)
	if o.writeFailed {
		t.Fatal("the scale-down's writes failed")
	}
	if f.most < 2 {
		t.Fatalf("at most %d entry in Raft at once, want the write's entries together (up to %d)", f.most, writesInFlight)
	}
	stopping := 0
	st.View(func(tx state.ReadTx) {
		for _, tk := range tx.TasksByService("s") {
			if tk.DesiredState > swarmpb.TaskState_TASK_STATE_RUNNING {
				stopping++
			}
		}
	})
	if stopping != n {
		t.Fatalf("%d of %d tasks asked to stop, want all", stopping, n)
	}
}

// TestFillsAreWrittenWhenChangesConflict: a pass that replaces tasks on a
// lost node and fills new slots writes the new slots' tasks even when its
// changes are refused (an agent's report raced them); only the
// replacements wait for the changes. 2,000 tasks on a down node, the
// service scaled to 3,000: one entry of changes, refused.
func TestFillsAreWrittenWhenChangesConflict(t *testing.T) {
	st, apply := oneNodeService(t, swarmpb.NodeStatus_NODE_STATUS_DOWN, 3000, 2000)
	r := &refuseFirst{Applier: apply}
	o := newOrchestrator(st, r, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.reconcile(context.Background(), nil)
	var total, newSlots int
	st.View(func(tx state.ReadTx) {
		for _, tk := range tx.TasksByService("s") {
			total++
			if tk.Slot > 2000 {
				newSlots++
			}
		}
	})
	if r.refused != 2000 {
		t.Fatalf("the refused entry held %d actions, want the 2,000 changes", r.refused)
	}
	if newSlots != 1000 || total != 3000 {
		t.Fatalf("%d tasks, %d of them in new slots: want 3,000 and 1,000 (the fills written, no replacement)", total, newSlots)
	}
}

// oneNodeService returns a store holding cluster c1 (task history 5), node
// n1 in status nodeStatus and service s asking for replicas, with running
// tasks RUNNING on n1 in slots 1..running, and the applier that wrote it.
func oneNodeService(t *testing.T, nodeStatus swarmpb.NodeStatus, replicas uint64, running int) (*state.Store, *statetest.Applier) {
	t.Helper()
	st := state.New()
	apply := statetest.NewApplier(st)
	acts := []*swarmpb.StoreAction{
		state.Create(&swarmpb.Cluster{Id: "c1", Settings: &swarmpb.ClusterSettings{TaskHistoryLimit: 5}}),
		state.Create(&swarmpb.Node{Id: "n1", Spec: &swarmpb.NodeSpec{}, Status: nodeStatus}),
		state.Create(&swarmpb.Service{Id: "s", Spec: spec("web", replicas), SpecVersion: 1}),
	}
	for i := range running {
		acts = append(acts, state.Create(&swarmpb.Task{Id: fmt.Sprintf("t%04d", i), ServiceId: "s", Slot: uint64(i + 1), NodeId: "n1",
			SpecVersion: 1, DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Spec: spec("web", replicas),
			Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}))
	}
	applyAll(t, apply, acts)
	return st, apply
}

// applyAll writes acts in entries of at most state.BatchLen actions.
func applyAll(t *testing.T, apply *statetest.Applier, acts []*swarmpb.StoreAction) {
	t.Helper()
	for len(acts) > 0 {
		k := state.BatchLen(acts)
		if _, err := apply.Apply(context.Background(), state.Batch(acts[:k]...)); err != nil {
			t.Fatal(err)
		}
		acts = acts[k:]
	}
}
