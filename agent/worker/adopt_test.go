package worker

import (
	"fmt"
	"testing"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/fake"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// listAll hides the fake engine's TaskContainers: the worker must list
// every container, as with an engine that cannot look tasks up.
type listAll struct{ exec.Executor }

// TestUpdateAdoptsAmongMany: a restarted worker, already running many
// tasks, gets the tasks it ran before one session message at a time; it
// adopts the running container of each (not restarted) and reports the
// exit of the one that ended while nobody watched, whether the engine can
// look up the new tasks' containers or only list them all.
func TestUpdateAdoptsAmongMany(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(*fake.Executor) exec.Executor
	}{
		{"lookup", func(e *fake.Executor) exec.Executor { return e }},
		{"list-all", func(e *fake.Executor) exec.Executor { return listAll{e} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex, rec := fake.New("node1"), newRecorder()
			w1 := New(ex, rec, testLog())
			var held []*swarmpb.Task
			for i := range 60 {
				held = append(held, task(fmt.Sprintf("held%02d", i), uint64(i+1), "img:v1"))
			}
			late := []*swarmpb.Task{task("late-run", 100, "img:v1"), task("late-exit", 101, "img:v1")}
			if err := w1.Assign(ctx, append(append([]*swarmpb.Task(nil), held...), late...)); err != nil {
				t.Fatal(err)
			}
			for _, tk := range late {
				rec.waitState(t, tk.GetId(), swarmpb.TaskState_TASK_STATE_RUNNING)
			}
			w1.Close()
			if err := ex.Exit("late-exit", 3); err != nil {
				t.Fatal(err)
			}

			rec2 := newRecorder()
			w2 := newWorker(t, tc.wrap(ex), rec2)
			// Updates, not a full Assign: the late containers are not
			// orphans, their tasks just come in later messages.
			if err := w2.Update(ctx, held, nil); err != nil {
				t.Fatal(err)
			}
			for _, tk := range late {
				if err := w2.Update(ctx, []*swarmpb.Task{withStatus(tk, swarmpb.TaskState_TASK_STATE_RUNNING)}, nil); err != nil {
					t.Fatal(err)
				}
			}
			st := rec2.waitState(t, "late-run", swarmpb.TaskState_TASK_STATE_RUNNING)
			info, _ := ex.Container("late-run")
			if st.GetContainerId() != info.ID || ex.Starts("late-run") != 1 {
				t.Fatalf("late-run: status %v, container %v, %d starts (want adopted, 1 start)", st, info, ex.Starts("late-run"))
			}
			st = rec2.waitState(t, "late-exit", swarmpb.TaskState_TASK_STATE_FAILED)
			if st.GetExitCode() != 3 || ex.Starts("late-exit") != 1 {
				t.Fatalf("late-exit: status %v, %d starts (want exit code 3, not restarted)", st, ex.Starts("late-exit"))
			}
			if ex.Created() != len(held)+len(late) {
				t.Fatalf("created %d containers, want %d (none new)", ex.Created(), len(held)+len(late))
			}
		})
	}
}
