package orchestrator

import (
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// TestReapedTasksDeletedByID: the tasks a pass reaps are deleted by ID,
// without the spec every whole task carries (a service scaled from
// 100,000 to 0 has 100,000 to reap, and each manager decodes each delete).
func TestReapedTasksDeletedByID(t *testing.T) {
	full := &swarmpb.Task{Id: "t1", ServiceId: "s", Slot: 1, NodeId: "n1", Spec: spec("web", 0), SpecVersion: 1,
		DesiredState: swarmpb.TaskState_TASK_STATE_SHUTDOWN, Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_SHUTDOWN},
		Meta: &swarmpb.Meta{Version: 7}}
	p := &plan{updated: map[string]*swarmpb.Task{}, deleted: map[string]*swarmpb.Task{}}
	p.remove(full)
	changes, creates, fills := p.actions()
	if len(changes) != 1 || len(creates) != 0 || len(fills) != 0 {
		t.Fatalf("actions %v / %v / %v, want one delete", changes, creates, fills)
	}
	a := changes[0]
	if a.GetKind() != swarmpb.StoreAction_KIND_DELETE || !proto.Equal(a.GetTask(), &swarmpb.Task{Id: "t1"}) {
		t.Fatalf("reaped task written as %v, want a delete carrying the ID alone", a)
	}
}
