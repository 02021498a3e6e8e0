package orchestrator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"github.com/raftswarm/raftswarm/state/statetest"
)

// refuseFirst refuses its first write as a conflict (as an agent's status
// report landing between a pass's read and its write does) and applies
// the others.
type refuseFirst struct {
	*statetest.Applier
	calls int
}

func (r *refuseFirst) Apply(ctx context.Context, b *swarmpb.StoreBatch) (uint64, error) {
	if r.calls++; r.calls == 1 {
		return 0, fmt.Errorf("apply batch, action 0: update task: %w", state.ErrConflict)
	}
	return r.Applier.Apply(ctx, b)
}

// TestConflictingEntryDoesNotStopTheOthers: a pass whose changes take
// several Raft entries writes every entry that still holds when one of
// them conflicts, and writes no creation that pass. Scaling 5,000 running
// tasks to 0 is three entries; the first is refused.
func TestConflictingEntryDoesNotStopTheOthers(t *testing.T) {
	st := state.New()
	apply := statetest.NewApplier(st)
	acts := []*swarmpb.StoreAction{
		state.Create(&swarmpb.Cluster{Id: "c1", Settings: &swarmpb.ClusterSettings{TaskHistoryLimit: 5}}),
		state.Create(&swarmpb.Node{Id: "n1", Spec: &swarmpb.NodeSpec{}, Status: swarmpb.NodeStatus_NODE_STATUS_READY}),
		state.Create(&swarmpb.Service{Id: "s", Spec: spec("web", 0), SpecVersion: 1}),
	}
	const n = 5000
	for i := range n {
		acts = append(acts, state.Create(&swarmpb.Task{Id: fmt.Sprintf("t%04d", i), ServiceId: "s", Slot: uint64(i + 1), NodeId: "n1",
			SpecVersion: 1, DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Spec: spec("web", 0),
			Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}))
	}
	for len(acts) > 0 {
		k := state.BatchLen(acts)
		if _, err := apply.Apply(context.Background(), state.Batch(acts[:k]...)); err != nil {
			t.Fatal(err)
		}
		acts = acts[k:]
	}

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
	first := state.MaxBatchActions
	if stopping != n-first {
		t.Fatalf("%d of %d tasks asked to stop after the first of %d entries was refused, want %d (every other entry written)",
			stopping, n, r.calls, n-first)
	}
}
