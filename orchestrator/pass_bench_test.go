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

// BenchmarkReconcilePass100k is one pass over a service of 100,000
// running tasks on 1,000 nodes with nothing to change: what every pass of
// a create or a scale-down pays before its changes (go test -run -
// -bench ReconcilePass -benchmem ./orchestrator).
func BenchmarkReconcilePass100k(b *testing.B) {
	st := state.New()
	r := statetest.NewApplier(st)
	apply := func(acts []*swarmpb.StoreAction) {
		for len(acts) > 0 {
			n := state.BatchLen(acts)
			if _, err := r.Apply(context.Background(), state.Batch(acts[:n]...)); err != nil {
				b.Fatal(err)
			}
			acts = acts[n:]
		}
	}
	acts := []*swarmpb.StoreAction{
		state.Create(&swarmpb.Cluster{Id: "c1", Settings: &swarmpb.ClusterSettings{TaskHistoryLimit: 5}}),
		state.Create(&swarmpb.Service{Id: "s", Spec: spec("web", 100_000), SpecVersion: 1}),
	}
	for i := range 1000 {
		acts = append(acts, state.Create(&swarmpb.Node{Id: fmt.Sprintf("n%04d", i), Spec: &swarmpb.NodeSpec{}, Status: swarmpb.NodeStatus_NODE_STATUS_READY}))
	}
	for i := range 100_000 {
		acts = append(acts, state.Create(&swarmpb.Task{Id: fmt.Sprintf("t%06d", i), ServiceId: "s", Slot: uint64(i + 1), NodeId: fmt.Sprintf("n%04d", i%1000),
			SpecVersion: 1, DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Spec: spec("web", 100_000),
			Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}}))
	}
	apply(acts)
	o := newOrchestrator(st, r, slog.New(slog.NewTextHandler(io.Discard, nil)))
	before := st.Index()
	for b.Loop() {
		o.reconcile(context.Background(), map[string]bool{"s": true})
	}
	if st.Index() != before {
		b.Fatalf("a pass with nothing to do wrote (index %d -> %d)", before, st.Index())
	}
}

// BenchmarkReadView100k is the part of a pass spent under the store's
// read lock (which holds up every Raft apply): copying the service's
// 100,000 tasks out.
func BenchmarkReadView100k(b *testing.B) {
	st := state.New()
	r := statetest.NewApplier(st)
	acts := []*swarmpb.StoreAction{state.Create(&swarmpb.Service{Id: "s", Spec: spec("web", 100_000), SpecVersion: 1})}
	for i := range 100_000 {
		acts = append(acts, state.Create(&swarmpb.Task{Id: fmt.Sprintf("t%06d", i), ServiceId: "s", Slot: uint64(i + 1),
			SpecVersion: 1, DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Spec: spec("web", 100_000)}))
	}
	for len(acts) > 0 {
		n := state.BatchLen(acts)
		if _, err := r.Apply(context.Background(), state.Batch(acts[:n]...)); err != nil {
			b.Fatal(err)
		}
		acts = acts[n:]
	}
	for b.Loop() {
		if v := readView(st, map[string]bool{"s": true}); len(v.tasks["s"]) != 100_000 {
			b.Fatalf("%d tasks read", len(v.tasks["s"]))
		}
	}
}
