package state

import (
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// TestDeleteTaskByID: DeleteTask carries the task's ID alone, and the
// store deletes it as it deletes a whole task: the task and its index
// entries go, and the event holds the stored task, spec and all.
func TestDeleteTaskByID(t *testing.T) {
	sv := &swarmpb.Service{Id: "s1", SpecVersion: 1, Spec: &swarmpb.ServiceSpec{Name: "web"}}
	tk := &swarmpb.Task{Id: "t1", ServiceId: "s1", NodeId: "n1", SpecVersion: 1, Spec: sv.Spec, Slot: 1,
		DesiredState: swarmpb.TaskState_TASK_STATE_SHUTDOWN, Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_SHUTDOWN}}
	a := DeleteTask("t1")
	if got := a.GetTask(); got.GetId() != "t1" || !proto.Equal(got, &swarmpb.Task{Id: "t1"}) {
		t.Fatalf("DeleteTask carries %v, want the ID alone", got)
	}
	for _, decoded := range []bool{false, true} {
		s := New()
		if _, err := s.ApplyBatch(1, 1000, create(sv, tk)); err != nil {
			t.Fatal(err)
		}
		var stored *swarmpb.Task
		s.View(func(tx ReadTx) { stored = tx.GetTask("t1") })
		b := Batch(DeleteTask("t1"))
		var evs []Event
		var err error
		if decoded {
			evs, err = s.ApplyDecodedBatch(2, 2000, b)
		} else {
			evs, err = s.ApplyBatch(2, 2000, b)
		}
		if err != nil {
			t.Fatalf("decoded=%v: %v", decoded, err)
		}
		if len(evs) != 1 || evs[0].Kind != EventDelete || evs[0].Object != stored {
			t.Fatalf("decoded=%v: events %+v, want one delete holding the stored task", decoded, evs)
		}
		s.View(func(tx ReadTx) {
			if tx.GetTask("t1") != nil || len(tx.TasksByService("s1")) != 0 || len(tx.TasksByNode("n1")) != 0 {
				t.Fatalf("decoded=%v: task t1 still stored or indexed after its delete", decoded)
			}
		})
	}
}
