package orchestrator

import (
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
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
	}{
		{"assigned to running", task("n1", run, assigned, 1), task("n1", run, run, 1), false, false},
		{"accepted to running, followed", task("n1", run, accepted, 1), task("n1", run, run, 1), true, true},
		{"placed on a node", task("", run, pending, 1), task("n1", run, assigned, 1), false, true},
		{"failed", task("n1", run, run, 1), task("n1", run, failed, 1), false, true},
		{"asked to stop", task("n1", run, run, 1), task("n1", shutdown, run, 1), false, true},
		{"moved node", task("n1", run, assigned, 1), task("n2", run, run, 1), false, true},
		{"new spec version", task("n1", run, assigned, 1), task("n1", run, run, 2), false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := newOrchestrator(nil, nil, nil)
			o.follows["s"] = c.followed
			d := map[string]bool{}
			o.markDirty(d, state.Event{Kind: state.EventUpdate, Object: c.new, Old: c.old})
			if d["s"] != c.wantDirty {
				t.Fatalf("dirty %v, want %v", d["s"], c.wantDirty)
			}
		})
	}
}
