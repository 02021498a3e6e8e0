package state

import (
	"errors"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestUpdateTaskStatus: a status patch replaces the stored task's status
// and nothing else; a malformed one fails the batch.
func TestUpdateTaskStatus(t *testing.T) {
	for _, decoded := range []bool{false, true} {
		s := New()
		apply := func(b *swarmpb.StoreBatch) ([]Event, error) {
			b = proto.Clone(b).(*swarmpb.StoreBatch)
			if decoded {
				return s.ApplyDecodedBatch(s.Index()+1, int64(s.Index()+1)*1000, b)
			}
			return s.ApplyBatch(s.Index()+1, int64(s.Index()+1)*1000, b)
		}
		sv := &swarmpb.Service{Id: "s1", SpecVersion: 1, Spec: &swarmpb.ServiceSpec{Name: "web"}}
		tk := &swarmpb.Task{Id: "t1", ServiceId: "s1", NodeId: "n1", SpecVersion: 1, Spec: sv.Spec, Slot: 3,
			DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_ASSIGNED}}
		if _, err := apply(create(sv, tk)); err != nil {
			t.Fatal(err)
		}
		var stored *swarmpb.Task
		s.View(func(tx ReadTx) { stored = tx.GetTask("t1") })

		st := &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING, ContainerId: "c1", Timestamp: 5}
		evs, err := apply(Batch(UpdateTaskStatus("t1", stored.GetMeta().GetVersion(), st)))
		if err != nil {
			t.Fatal(err)
		}
		var got *swarmpb.Task
		s.View(func(tx ReadTx) { got = tx.GetTask("t1") })
		if len(evs) != 1 || evs[0].Kind != EventUpdate || evs[0].Object != got || evs[0].Old != stored {
			t.Fatalf("decoded=%v: events %+v", decoded, evs)
		}
		want := proto.Clone(stored).(*swarmpb.Task)
		want.Status = st
		want.Meta = &swarmpb.Meta{Version: 2, CreatedAt: 1000, UpdatedAt: 2000}
		if !proto.Equal(got, want) {
			t.Fatalf("decoded=%v: got %v, want %v", decoded, got, want)
		}
		if got.Spec != stored.Spec {
			t.Errorf("decoded=%v: the patched task holds a new copy of its spec", decoded)
		}
		if stored.Status.State != swarmpb.TaskState_TASK_STATE_ASSIGNED || stored.Meta.Version != 1 {
			t.Errorf("decoded=%v: the previous version was modified: %v", decoded, stored)
		}

		for name, c := range map[string]struct {
			act  *swarmpb.StoreAction
			want error
		}{
			"no status": {UpdateTaskStatus("t1", 2, nil), ErrInvalid},
			"no id":     {UpdateTaskStatus("", 2, st), ErrInvalid},
			"create kind": {&swarmpb.StoreAction{Kind: swarmpb.StoreAction_KIND_CREATE,
				Target: &swarmpb.StoreAction_TaskStatus{TaskStatus: &swarmpb.TaskStatusPatch{TaskId: "t1", Version: 2, Status: st}}}, ErrInvalid},
		} {
			if _, err := apply(Batch(c.act)); !errors.Is(err, c.want) {
				t.Errorf("decoded=%v, %s: err %v, want %v", decoded, name, err, c.want)
			}
		}
	}
}

// TestWithStatusCopiesEveryField fails when Task gains a field withStatus
// does not carry over.
func TestWithStatusCopiesEveryField(t *testing.T) {
	full := &swarmpb.Task{}
	m := full.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		switch {
		case f.Kind() == protoreflect.MessageKind:
			m.Set(f, protoreflect.ValueOfMessage(m.NewField(f).Message()))
		case f.Kind() == protoreflect.StringKind:
			m.Set(f, protoreflect.ValueOfString("x"))
		case f.Kind() == protoreflect.Uint64Kind:
			m.Set(f, protoreflect.ValueOfUint64(7))
		case f.Kind() == protoreflect.EnumKind:
			m.Set(f, protoreflect.ValueOfEnum(1))
		default:
			t.Fatalf("field %s of kind %v: teach this test to fill it", f.Name(), f.Kind())
		}
	}
	got := withStatus(full, full.Status, full.Meta)
	if !proto.Equal(got, full) {
		t.Fatalf("withStatus dropped fields:\n got %v\nwant %v", got, full)
	}
}

// TestTaskStatusPatchOvertaken: a patch is not held to the version the
// leader read (the orchestrator's writes to the task do not conflict with
// it), applies if it still advances the stored status, and is skipped
// without failing the rest of its batch when it does not, or when its task
// is gone.
func TestTaskStatusPatchOvertaken(t *testing.T) {
	s := New()
	apply := func(acts ...*swarmpb.StoreAction) []Event {
		t.Helper()
		evs, err := s.ApplyBatch(s.Index()+1, int64(s.Index()+1)*1000, Batch(acts...))
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	task := func(id string, st swarmpb.TaskState) *swarmpb.Task {
		return &swarmpb.Task{Id: id, ServiceId: "s1", NodeId: "n1", DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
			Status: &swarmpb.TaskStatus{State: st}}
	}
	apply(Create(task("a", swarmpb.TaskState_TASK_STATE_ASSIGNED)), Create(task("b", swarmpb.TaskState_TASK_STATE_RUNNING)))
	read := 1 // the version the leader read the tasks at
	// The orchestrator asks task a to stop after the report was read.
	var a *swarmpb.Task
	s.View(func(tx ReadTx) { a = proto.Clone(tx.GetTask("a")).(*swarmpb.Task) })
	a.DesiredState = swarmpb.TaskState_TASK_STATE_SHUTDOWN
	apply(Update(a))

	evs := apply(
		UpdateTaskStatus("a", uint64(read), &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}),
		UpdateTaskStatus("gone", uint64(read), &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}),
		UpdateTaskStatus("b", uint64(read), &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_STARTING}), // a step back
	)
	if len(evs) != 1 || evs[0].Object.(*swarmpb.Task).GetId() != "a" {
		t.Fatalf("events %+v, want one, for task a", evs)
	}
	s.View(func(tx ReadTx) {
		got := tx.GetTask("a")
		if got.GetStatus().GetState() != swarmpb.TaskState_TASK_STATE_RUNNING || got.GetDesiredState() != swarmpb.TaskState_TASK_STATE_SHUTDOWN {
			t.Fatalf("task a: %v, want RUNNING with desired SHUTDOWN kept", got)
		}
		if got := tx.GetTask("b").GetStatus().GetState(); got != swarmpb.TaskState_TASK_STATE_RUNNING {
			t.Fatalf("task b went back to %v", got)
		}
	})
}
