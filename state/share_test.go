package state

import (
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

func specTask(id string, sv *swarmpb.Service, spec *swarmpb.ServiceSpec, version uint64) *swarmpb.Task {
	return &swarmpb.Task{Id: id, ServiceId: sv.Id, Spec: spec, SpecVersion: version}
}

// TestApplyDecodedBatchKeepsObjects: the FSM's freshly decoded objects are
// stored as they are; ApplyBatch still stores copies, so a caller may keep
// using what it passed.
func TestApplyDecodedBatchKeepsObjects(t *testing.T) {
	s := New()
	n := &swarmpb.Node{Id: "n1", Addr: "a:1"}
	if _, err := s.ApplyDecodedBatch(1, 1, create(n)); err != nil {
		t.Fatal(err)
	}
	m := &swarmpb.Node{Id: "n2", Addr: "a:2"}
	mustApply(t, s, create(m))
	s.View(func(tx ReadTx) {
		if tx.GetNode("n1") != n {
			t.Error("ApplyDecodedBatch stored a copy of the decoded node")
		}
		if got := tx.GetNode("n2"); got == m || !proto.Equal(got.GetMeta(), &swarmpb.Meta{Version: 2, CreatedAt: 2000, UpdatedAt: 2000}) {
			t.Errorf("ApplyBatch stored %p (passed %p) with meta %v: want a copy with the store's meta", got, m, got.GetMeta())
		}
	})
	if m.Meta != nil {
		t.Errorf("ApplyBatch changed the caller's object: meta %v", m.Meta)
	}
}

// TestTaskSpecShared: tasks hold one copy of their service's spec, whether
// created, updated (at the same spec version), or restored from a snapshot.
func TestTaskSpecShared(t *testing.T) {
	for _, decoded := range []bool{false, true} {
		s := New()
		apply := func(b *swarmpb.StoreBatch) {
			t.Helper()
			b = proto.Clone(b).(*swarmpb.StoreBatch) // as from the wire: no pointer in common
			var err error
			if decoded {
				_, err = s.ApplyDecodedBatch(s.Index()+1, 1, b)
			} else {
				_, err = s.ApplyBatch(s.Index()+1, 1, b)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		sv := &swarmpb.Service{Id: "s1", SpecVersion: 3, Spec: &swarmpb.ServiceSpec{Name: "web",
			Container: &swarmpb.ContainerSpec{Image: "img:1", Env: []string{"A=B"}}}}
		other := proto.Clone(sv.Spec).(*swarmpb.ServiceSpec)
		other.Container.Image = "img:0"
		apply(create(sv))
		apply(create(specTask("t1", sv, sv.Spec, 3), specTask("t2", sv, sv.Spec, 3),
			specTask("old", sv, other, 2), specTask("odd", sv, other, 3)))

		var stored *swarmpb.Service
		get := func(id string) (tk *swarmpb.Task) {
			s.View(func(tx ReadTx) { stored, tk = tx.GetService("s1"), tx.GetTask(id) })
			return tk
		}
		t1, t2 := get("t1"), get("t2")
		if t1.Spec != stored.Spec || t2.Spec != stored.Spec {
			t.Fatalf("decoded=%v: tasks created with their service's spec hold their own copies", decoded)
		}
		if o := get("old"); o.Spec == stored.Spec || o.Spec.Container.Image != "img:0" {
			t.Errorf("decoded=%v: a task of an older spec version got %v", decoded, o.Spec)
		}
		if o := get("odd"); o.Spec == stored.Spec || o.Spec.Container.Image != "img:0" {
			t.Errorf("decoded=%v: a task whose spec differs from its service's got %v", decoded, o.Spec)
		}

		// A status update carries the whole task, its spec decoded anew.
		up := proto.Clone(t1).(*swarmpb.Task)
		up.Status = &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING}
		apply(update(up))
		if got := get("t1"); got.Spec != stored.Spec || got.GetStatus().GetState() != swarmpb.TaskState_TASK_STATE_RUNNING {
			t.Errorf("decoded=%v: updated task: spec shared %v, status %v", decoded, got.Spec == stored.Spec, got.GetStatus())
		}
		// The service moving on leaves its tasks' spec alone.
		sv2 := proto.Clone(stored).(*swarmpb.Service)
		sv2.Spec.Container.Image, sv2.SpecVersion = "img:2", 4
		apply(update(sv2))
		if got := get("t2"); got.Spec.Container.Image != "img:1" {
			t.Errorf("decoded=%v: task spec changed with its service's: %v", decoded, got.Spec)
		}

	}
}

// TestTaskSpecSharedOnRestore: a snapshot's tasks share their service's
// spec once restored.
func TestTaskSpecSharedOnRestore(t *testing.T) {
	sv := &swarmpb.Service{Id: "s1", SpecVersion: 1, Spec: &swarmpb.ServiceSpec{Name: "web", Container: &swarmpb.ContainerSpec{Image: "img:1"}}}
	snap := &swarmpb.Snapshot{Version: SnapshotVersion, Services: []*swarmpb.Service{sv},
		Tasks: []*swarmpb.Task{specTask("t1", sv, proto.Clone(sv.Spec).(*swarmpb.ServiceSpec), 1), specTask("t2", sv, proto.Clone(sv.Spec).(*swarmpb.ServiceSpec), 1)}}
	s := New()
	if err := s.Restore(1, snap); err != nil {
		t.Fatal(err)
	}
	s.View(func(tx ReadTx) {
		spec := tx.GetService("s1").Spec
		if tx.GetTask("t1").Spec != spec || tx.GetTask("t2").Spec != spec {
			t.Error("restored tasks hold their own copies of their service's spec")
		}
	})
}
