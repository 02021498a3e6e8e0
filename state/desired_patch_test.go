package state

import (
	"errors"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// TestUpdateTaskDesired: a desired-state patch stores exactly the task a
// whole-task update with the same desired state and status would have
// stored (spec shared, meta as for an update), with the same event.
func TestUpdateTaskDesired(t *testing.T) {
	for _, decoded := range []bool{false, true} {
		patched, whole := New(), New()
		apply := func(s *Store, b *swarmpb.StoreBatch) ([]Event, error) {
			b = proto.Clone(b).(*swarmpb.StoreBatch)
			if decoded {
				return s.ApplyDecodedBatch(s.Index()+1, int64(s.Index()+1)*1000, b)
			}
			return s.ApplyBatch(s.Index()+1, int64(s.Index()+1)*1000, b)
		}
		sv := &swarmpb.Service{Id: "s1", SpecVersion: 1, Spec: &swarmpb.ServiceSpec{Name: "web"}}
		tk := &swarmpb.Task{Id: "t1", ServiceId: "s1", SpecVersion: 1, Spec: sv.Spec, Slot: 3,
			DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_PENDING}}
		for _, s := range []*Store{patched, whole} {
			if _, err := apply(s, create(sv, tk)); err != nil {
				t.Fatal(err)
			}
		}
		var stored *swarmpb.Task
		patched.View(func(tx ReadTx) { stored = tx.GetTask("t1") })

		st := &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_SHUTDOWN, Message: "scaled down", Timestamp: 5}
		evs, err := apply(patched, Batch(UpdateTaskDesired("t1", swarmpb.TaskState_TASK_STATE_SHUTDOWN, st, "")))
		if err != nil {
			t.Fatal(err)
		}
		w := proto.Clone(stored).(*swarmpb.Task)
		w.DesiredState, w.Status = swarmpb.TaskState_TASK_STATE_SHUTDOWN, st
		wevs, err := apply(whole, Batch(Update(w)))
		if err != nil {
			t.Fatal(err)
		}
		var got, want *swarmpb.Task
		patched.View(func(tx ReadTx) { got = tx.GetTask("t1") })
		whole.View(func(tx ReadTx) { want = tx.GetTask("t1") })
		if !proto.Equal(got, want) {
			t.Fatalf("decoded=%v: patched %v, whole-task update %v", decoded, got, want)
		}
		if len(evs) != 1 || len(wevs) != 1 || evs[0].Kind != wevs[0].Kind || evs[0].Index != wevs[0].Index ||
			evs[0].Object != got || evs[0].Old != stored {
			t.Fatalf("decoded=%v: events %+v, whole-task update's %+v", decoded, evs, wevs)
		}
		if got.Spec != stored.Spec {
			t.Errorf("decoded=%v: the patched task holds a new copy of its spec", decoded)
		}
		if stored.DesiredState != swarmpb.TaskState_TASK_STATE_RUNNING || stored.Meta.Version != 1 {
			t.Errorf("decoded=%v: the previous version was modified: %v", decoded, stored)
		}

		for name, c := range map[string]struct {
			act  *swarmpb.StoreAction
			want error
		}{
			"no id":         {UpdateTaskDesired("", swarmpb.TaskState_TASK_STATE_REMOVE, nil, ""), ErrInvalid},
			"no desired":    {UpdateTaskDesired("t1", swarmpb.TaskState_TASK_STATE_NEW, nil, ""), ErrInvalid},
			"below running": {UpdateTaskDesired("t1", swarmpb.TaskState_TASK_STATE_ASSIGNED, nil, ""), ErrInvalid},
			"create kind": {&swarmpb.StoreAction{Kind: swarmpb.StoreAction_KIND_CREATE,
				Target: &swarmpb.StoreAction_TaskDesired{TaskDesired: &swarmpb.TaskDesiredPatch{TaskId: "t1",
					DesiredState: swarmpb.TaskState_TASK_STATE_REMOVE}}}, ErrInvalid},
		} {
			if _, err := apply(patched, Batch(c.act)); !errors.Is(err, c.want) {
				t.Errorf("decoded=%v, %s: err %v, want %v", decoded, name, err, c.want)
			}
		}
	}
}

// TestTaskDesiredPatchSkipped: a desired state that is not higher than
// the stored one, and a status that does not advance or whose task is no
// longer on the node read, are skipped, not a conflict: the rest of the patch and of its batch apply. A patch of
// which nothing applies, or whose task is gone, changes nothing and has
// no event.
func TestTaskDesiredPatchSkipped(t *testing.T) {
	s := New()
	apply := func(acts ...*swarmpb.StoreAction) []Event {
		t.Helper()
		evs, err := s.ApplyBatch(s.Index()+1, int64(s.Index()+1)*1000, Batch(acts...))
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	task := func(id string, desired, st swarmpb.TaskState) *swarmpb.Task {
		return &swarmpb.Task{Id: id, ServiceId: "s1", NodeId: "n1", DesiredState: desired, Status: &swarmpb.TaskStatus{State: st}}
	}
	const (
		running  = swarmpb.TaskState_TASK_STATE_RUNNING
		shutdown = swarmpb.TaskState_TASK_STATE_SHUTDOWN
		remove   = swarmpb.TaskState_TASK_STATE_REMOVE
		orphaned = swarmpb.TaskState_TASK_STATE_ORPHANED
		failed   = swarmpb.TaskState_TASK_STATE_FAILED
	)
	apply(Create(task("removed", remove, running)), Create(task("stopping", shutdown, running)),
		Create(task("reported", running, failed)), Create(task("same", shutdown, shutdown)),
		Create(task("placed", running, swarmpb.TaskState_TASK_STATE_ASSIGNED)))

	evs := apply(
		// Lower desired state: skipped whole.
		UpdateTaskDesired("removed", shutdown, nil, "n1"),
		// Equal desired state, status advances: the status applies.
		UpdateTaskDesired("stopping", shutdown, &swarmpb.TaskStatus{State: orphaned, Message: "node is down"}, "n1"),
		// Higher desired state; the agent's report got further than the
		// plan's status: only the desired state applies.
		UpdateTaskDesired("reported", shutdown, &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_SHUTDOWN}, "n1"),
		// Nothing advances.
		UpdateTaskDesired("same", shutdown, &swarmpb.TaskStatus{State: shutdown}, "n1"),
		UpdateTaskDesired("gone", remove, nil, ""),
		// Read unplaced, placed since: its agent reports; only the desired
		// state applies.
		UpdateTaskDesired("placed", shutdown, &swarmpb.TaskStatus{State: shutdown, Message: "scaled down"}, ""),
	)
	if len(evs) != 3 {
		t.Fatalf("events %+v, want three (stopping, reported, placed)", evs)
	}
	s.View(func(tx ReadTx) {
		for id, want := range map[string][2]swarmpb.TaskState{
			"removed": {remove, running}, "stopping": {shutdown, orphaned}, "reported": {shutdown, failed}, "same": {shutdown, shutdown},
			"placed": {shutdown, swarmpb.TaskState_TASK_STATE_ASSIGNED},
		} {
			got := tx.GetTask(id)
			if got.GetDesiredState() != want[0] || got.GetStatus().GetState() != want[1] {
				t.Errorf("task %s: desired %v, status %v; want %v, %v", id, got.GetDesiredState(), got.GetStatus().GetState(), want[0], want[1])
			}
		}
		if got := tx.GetTask("removed").GetMeta().GetVersion(); got != 1 {
			t.Errorf("a skipped patch wrote task removed (version %d)", got)
		}
	})
}
