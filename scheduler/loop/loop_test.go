package loop

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/scheduler"
	"github.com/raftswarm/raftswarm/state"
	"github.com/raftswarm/raftswarm/state/statetest"
)

// memRaft applies batches straight to a store: Raft without the network.
type memRaft = statetest.Applier

// The scheduling loop considers at most passLimit pending tasks a pass and
// takes turns through all of them, so a pass stays bounded however many
// tasks wait.
func TestSchedulePassIsBounded(t *testing.T) {
	st := state.New()
	r := statetest.NewApplier(st)
	var acts []*swarmpb.StoreAction
	for i := 0; i < 25; i++ {
		acts = append(acts, state.Create(&swarmpb.Task{Id: fmt.Sprintf("t%02d", i), ServiceId: "s", Spec: loopSpec("s", 1),
			DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
			Status:       &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_PENDING}}))
	}
	if _, err := r.Apply(context.Background(), state.Batch(acts...)); err != nil {
		t.Fatal(err)
	}
	l := &schedLoop{store: st, raft: r, log: slog.New(slog.NewTextHandler(io.Discard, nil)), passLimit: 10,
		pending: map[string]*swarmpb.Task{}, sched: scheduler.New()}
	st.View(func(tx state.ReadTx) {
		for _, tk := range tx.ListTasks() {
			l.observe(tk)
		}
	})
	seen := map[string]int{}
	for pass, want := range []int{10, 10, 5} {
		tasks := l.pass()
		if len(tasks) != want {
			t.Fatalf("pass %d: %d tasks, want %d", pass, len(tasks), want)
		}
		for _, tk := range tasks {
			seen[tk.Id]++
		}
	}
	if len(seen) != 25 || len(l.backlog) != 0 {
		t.Fatalf("a round saw %d distinct tasks (want 25), backlog %d", len(seen), len(l.backlog))
	}
	// Every pass writes at most passLimit tasks (here: the reason no node
	// fits them).
	idx := st.Index()
	if !l.schedule(context.Background()) {
		t.Fatal("schedule failed")
	}
	var written int
	st.View(func(tx state.ReadTx) {
		for _, tk := range tx.ListTasks() {
			if tk.Meta.Version > idx {
				written++
			}
		}
	})
	if written == 0 || written > l.passLimit {
		t.Fatalf("one pass wrote %d tasks, want 1..%d", written, l.passLimit)
	}
}

func loopSpec(name string, replicas uint64) *swarmpb.ServiceSpec {
	return &swarmpb.ServiceSpec{Name: name, Replicas: replicas,
		Container: &swarmpb.ContainerSpec{Image: "demo:v1"},
		Restart:   &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_ANY},
		Update:    &swarmpb.UpdateConfig{Parallelism: 1}}
}
