package orchestrator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"github.com/raftswarm/raftswarm/state/statetest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// recording applies batches and counts the kinds of task updates written.
type recording struct {
	*statetest.Applier
	mu           sync.Mutex
	whole, patch int
}

func (r *recording) Apply(ctx context.Context, b *swarmpb.StoreBatch) (uint64, error) {
	r.mu.Lock()
	for _, a := range b.GetActions() {
		switch {
		case a.GetKind() == swarmpb.StoreAction_KIND_UPDATE && a.GetTask() != nil:
			r.whole++
		case a.GetTaskDesired() != nil:
			r.patch++
		}
	}
	r.mu.Unlock()
	return r.Applier.Apply(ctx, b)
}

// TestScaleDownOvertakenByReports: scaling 3,000 running tasks (and 100
// never placed) to 0 while every running task's agent reports a status
// between the pass's read and its write. With desired-state patches the
// one pass stops every task (no conflict, no second pass) and keeps the
// agents' reports; the never-placed tasks are marked SHUTDOWN. While a
// manager cannot read patches (patches off) the pass writes whole tasks,
// which conflict with those reports.
func TestScaleDownOvertakenByReports(t *testing.T) {
	for _, patches := range []bool{true, false} {
		t.Run(fmt.Sprintf("patches=%v", patches), func(t *testing.T) {
			const running, pending = 3000, 100
			st, apply := oneNodeService(t, swarmpb.NodeStatus_NODE_STATUS_READY, 0, running)
			var acts []*swarmpb.StoreAction
			for i := running; i < running+pending; i++ {
				acts = append(acts, state.Create(&swarmpb.Task{Id: fmt.Sprintf("t%04d", i), ServiceId: "s", Slot: uint64(i + 1),
					SpecVersion: 1, DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Spec: spec("web", 0),
					Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_PENDING}}))
			}
			applyAll(t, apply, acts)

			r := &recording{Applier: apply}
			o := newOrchestrator(st, r, slog.New(slog.NewTextHandler(io.Discard, nil)))
			o.desiredPatches = func() bool { return patches }
			reported := false
			o.planning = func([]string) {
				if reported {
					return
				}
				reported = true
				var reports []*swarmpb.StoreAction
				for i := range running {
					reports = append(reports, state.UpdateTaskStatus(fmt.Sprintf("t%04d", i), 0,
						&swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING, Message: "healthy"}))
				}
				for len(reports) > 0 {
					k := state.BatchLen(reports)
					if _, err := apply.Apply(context.Background(), state.Batch(reports[:k]...)); err != nil {
						t.Error(err)
					}
					reports = reports[k:]
				}
			}
			o.reconcile(context.Background(), nil)

			if !patches {
				if !o.writeFailed || r.patch != 0 || r.whole == 0 {
					t.Fatalf("patches off: writeFailed %v, %d whole tasks and %d patches written; want a conflict and whole tasks only",
						o.writeFailed, r.whole, r.patch)
				}
				return
			}
			if o.writeFailed || r.whole != 0 || r.patch != running+pending {
				t.Fatalf("writeFailed %v, %d whole tasks and %d patches written; want no conflict and %d patches",
					o.writeFailed, r.whole, r.patch, running+pending)
			}
			st.View(func(tx state.ReadTx) {
				for _, tk := range tx.TasksByService("s") {
					if tk.DesiredState != swarmpb.TaskState_TASK_STATE_SHUTDOWN {
						t.Fatalf("task %s desired %v after one pass, want SHUTDOWN", tk.Id, tk.DesiredState)
					}
					want := swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING, Message: "healthy"}
					if tk.NodeId == "" {
						want = swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_SHUTDOWN, Message: "scaled down"}
					}
					if got := tk.GetStatus(); got.GetState() != want.State || got.GetMessage() != want.Message {
						t.Fatalf("task %s status %v, want %v %q", tk.Id, got, want.State, want.Message)
					}
				}
			})
		})
	}
}

// TestShutdownsPatched: the task of a removed service is asked to be
// removed, and a task on a down node is replaced and marked ORPHANED (no
// agent will report), with patches that store what a whole-task update
// would have; the replacement is written too.
func TestShutdownsPatched(t *testing.T) {
	st := state.New()
	apply := statetest.NewApplier(st)
	mk := func(id, svc, node string) *swarmpb.StoreAction {
		return state.Create(&swarmpb.Task{Id: id, ServiceId: svc, Slot: 1, NodeId: node, SpecVersion: 1,
			DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING, Spec: spec("web", 1),
			Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING, ContainerId: "c-" + id}})
	}
	if _, err := apply.Apply(context.Background(), state.Batch(
		state.Create(&swarmpb.Cluster{Id: "c1", Settings: &swarmpb.ClusterSettings{TaskHistoryLimit: 5}}),
		state.Create(&swarmpb.Node{Id: "up", Spec: &swarmpb.NodeSpec{}, Status: swarmpb.NodeStatus_NODE_STATUS_READY}),
		state.Create(&swarmpb.Node{Id: "down", Spec: &swarmpb.NodeSpec{}, Status: swarmpb.NodeStatus_NODE_STATUS_DOWN}),
		state.Create(&swarmpb.Service{Id: "s", Spec: spec("web", 1), SpecVersion: 1}),
		mk("a", "gone", "up"), mk("b", "s", "down"))); err != nil {
		t.Fatal(err)
	}
	r := &recording{Applier: apply}
	o := newOrchestrator(st, r, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.desiredPatches = func() bool { return true }
	o.reconcile(context.Background(), nil)
	if o.writeFailed || r.whole != 0 || r.patch != 2 {
		t.Fatalf("writeFailed %v, %d whole tasks and %d patches written; want 2 patches", o.writeFailed, r.whole, r.patch)
	}
	st.View(func(tx state.ReadTx) {
		a, b := tx.GetTask("a"), tx.GetTask("b")
		if a.DesiredState != swarmpb.TaskState_TASK_STATE_REMOVE || a.Status.State != swarmpb.TaskState_TASK_STATE_RUNNING {
			t.Errorf("task a: %v, want desired REMOVE, still RUNNING", a)
		}
		if b.DesiredState != swarmpb.TaskState_TASK_STATE_SHUTDOWN || b.Status.State != swarmpb.TaskState_TASK_STATE_ORPHANED ||
			b.Status.ContainerId != "c-b" || b.Status.Message != "node is down: node is down" {
			t.Errorf("task b: %v, want desired SHUTDOWN, ORPHANED with its container", b)
		}
		if n := len(tx.TasksByService("s")); n != 2 {
			t.Errorf("service s has %d tasks, want 2 (b and its replacement)", n)
		}
	})
}

// TestCopyTaskCopiesEveryField fails when Task gains a field copyTask does
// not carry over (and onlyDesired would not compare).
func TestCopyTaskCopiesEveryField(t *testing.T) {
	full := &swarmpb.Task{}
	m := full.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		switch f.Kind() {
		case protoreflect.MessageKind:
			m.Set(f, protoreflect.ValueOfMessage(m.NewField(f).Message()))
		case protoreflect.StringKind:
			m.Set(f, protoreflect.ValueOfString("x"))
		case protoreflect.Uint64Kind:
			m.Set(f, protoreflect.ValueOfUint64(7))
		case protoreflect.EnumKind:
			m.Set(f, protoreflect.ValueOfEnum(1))
		default:
			t.Fatalf("field %s of kind %v: teach this test to fill it", f.Name(), f.Kind())
		}
	}
	got := copyTask(full)
	if !proto.Equal(got, full) || !onlyDesired(full, got) {
		t.Fatalf("copyTask dropped fields:\n got %v\nwant %v", got, full)
	}
}
