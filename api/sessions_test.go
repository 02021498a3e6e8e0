package api

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// storeRaft applies batches straight to a store, as a one-node Raft would.
type storeRaft struct {
	Raft
	mu      sync.Mutex
	store   *state.Store
	members []raft.Member
	last    *swarmpb.StoreBatch // the last batch applied
}

func (r *storeRaft) Apply(_ context.Context, b *swarmpb.StoreBatch) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	idx := r.store.Index() + 1
	r.last = b
	_, err := r.store.ApplyBatch(idx, time.Now().UnixNano(), b)
	return idx, err
}
func (r *storeRaft) Leader() (string, string)        { return "self", "127.0.0.1:1" }
func (r *storeRaft) Members() ([]raft.Member, error) { return r.members, nil }

func dtTask(id, node string, st swarmpb.TaskState) *swarmpb.Task {
	return &swarmpb.Task{Id: id, ServiceId: "s", NodeId: node, DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
		Status: &swarmpb.TaskStatus{State: st}}
}

func dtApply(t *testing.T, r *storeRaft, acts ...*swarmpb.StoreAction) {
	t.Helper()
	if _, err := r.Apply(context.Background(), state.Batch(acts...)); err != nil {
		t.Fatal(err)
	}
}

func dtGet(s *state.Store, id string) *swarmpb.Task {
	var t *swarmpb.Task
	s.View(func(tx state.ReadTx) { t = tx.GetTask(id) })
	return t
}

// drain collects what a session has queued until want holds, as the
// Session handler would send it (latest version per task wins).
func drain(t *testing.T, sess *session, want func(changed map[string]*swarmpb.Task, removed map[string]bool) bool) {
	t.Helper()
	changed, removed := map[string]*swarmpb.Task{}, map[string]bool{}
	deadline := time.After(5 * time.Second)
	for !want(changed, removed) {
		select {
		case <-sess.notify:
		case <-deadline:
			t.Fatalf("session got changed=%v removed=%v", changed, removed)
		}
		for more := true; more; {
			var c []*swarmpb.Task
			var r []string
			c, r, more = sess.take(2)
			for _, x := range c {
				changed[x.Id] = x
				delete(removed, x.Id)
			}
			for _, id := range r {
				removed[id] = true
				delete(changed, id)
			}
		}
	}
}

func TestSessionFanOut(t *testing.T) {
	st := state.New()
	r := &storeRaft{store: st}
	d := &Dispatcher{Store: st, Raft: r}
	dtApply(t, r,
		state.Create(dtTask("a1", "A", swarmpb.TaskState_TASK_STATE_RUNNING)),
		state.Create(dtTask("a2", "A", swarmpb.TaskState_TASK_STATE_PENDING)), // not yet assigned
		state.Create(dtTask("b1", "B", swarmpb.TaskState_TASK_STATE_ASSIGNED)))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := d.startSessions(ctx)
	defer s.stop()

	// Writes racing with registration are seen exactly once: either in the
	// full set or as an update.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			dtApply(t, r, state.Create(dtTask(fmt.Sprintf("n%03d", i), "A", swarmpb.TaskState_TASK_STATE_ASSIGNED)))
		}
	}()
	sessA, full := s.register("A")
	defer s.unregister(sessA)
	inFull := map[string]bool{}
	for _, x := range full {
		inFull[x.Id] = true
	}
	if !inFull["a1"] || inFull["a2"] || inFull["b1"] {
		t.Fatalf("full set %v", inFull)
	}
	<-done
	drain(t, sessA, func(changed map[string]*swarmpb.Task, _ map[string]bool) bool {
		for i := range 200 {
			id := fmt.Sprintf("n%03d", i)
			if inFull[id] && changed[id] != nil {
				t.Fatalf("%s both in the full set and in an update", id)
			}
			if !inFull[id] && changed[id] == nil {
				return false
			}
		}
		return true
	})

	sessB, full := s.register("B")
	defer s.unregister(sessB)
	if len(full) != 1 || full[0].Id != "b1" {
		t.Fatalf("B's full set %v", full)
	}

	// a2 gets assigned; a1 moves to B; b1 is deleted.
	a2 := proto.Clone(dtGet(st, "a2")).(*swarmpb.Task)
	a2.Status.State = swarmpb.TaskState_TASK_STATE_ASSIGNED
	a1 := proto.Clone(dtGet(st, "a1")).(*swarmpb.Task)
	a1.NodeId = "B"
	dtApply(t, r, state.Update(a2), state.Update(a1), state.Delete(dtGet(st, "b1")))
	drain(t, sessA, func(changed map[string]*swarmpb.Task, removed map[string]bool) bool {
		return changed["a2"] != nil && removed["a1"]
	})
	drain(t, sessB, func(changed map[string]*swarmpb.Task, removed map[string]bool) bool {
		return changed["a1"] != nil && removed["b1"]
	})
}

func TestStatusBatching(t *testing.T) {
	st := state.New()
	r := &storeRaft{store: st}
	d := &Dispatcher{Store: st, Raft: r}
	dtApply(t, r,
		state.Create(dtTask("x", "A", swarmpb.TaskState_TASK_STATE_ASSIGNED)),
		state.Create(dtTask("y", "A", swarmpb.TaskState_TASK_STATE_RUNNING)),
		state.Create(dtTask("z", "B", swarmpb.TaskState_TASK_STATE_ASSIGNED)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := d.startSessions(ctx)
	defer s.stop()
	before := st.Index()

	send := func(node string, ups ...*swarmpb.TaskStatusUpdate) chan error {
		req := &statusRequest{nodeID: node, updates: ups, done: make(chan error, 1)}
		s.updates <- req
		return req.done
	}
	up := func(id string, state swarmpb.TaskState) *swarmpb.TaskStatusUpdate {
		return &swarmpb.TaskStatusUpdate{TaskId: id, Status: &swarmpb.TaskStatus{State: state}}
	}
	var dones []chan error
	dones = append(dones,
		send("A", up("x", swarmpb.TaskState_TASK_STATE_STARTING), up("x", swarmpb.TaskState_TASK_STATE_RUNNING)),
		send("A", up("y", swarmpb.TaskState_TASK_STATE_STARTING)),   // backwards: dropped
		send("A", up("gone", swarmpb.TaskState_TASK_STATE_RUNNING)), // deleted: dropped
		send("A", up("z", swarmpb.TaskState_TASK_STATE_RUNNING)),    // not A's: dropped
		send("B", &swarmpb.TaskStatusUpdate{TaskId: "z", Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_FAILED,
			Timestamp: time.Now().Add(9 * time.Minute).UnixNano()}})) // a node whose clock is 9 minutes ahead
	for _, done := range dones {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got := st.Index(); got != before+1 {
		t.Fatalf("%d writes, want one batch", got-before)
	}
	for id, want := range map[string]swarmpb.TaskState{
		"x": swarmpb.TaskState_TASK_STATE_RUNNING,
		"y": swarmpb.TaskState_TASK_STATE_RUNNING,
		"z": swarmpb.TaskState_TASK_STATE_FAILED,
	} {
		if got := dtGet(st, id).Status.State; got != want {
			t.Fatalf("%s is %v, want %v", id, got, want)
		}
	}
	// The leader stamps statuses with its own clock: a failure reported
	// from a node's future must not delay the task's restart.
	if ts := time.Unix(0, dtGet(st, "z").Status.Timestamp); ts.After(time.Now()) {
		t.Fatalf("stored status time %v is in the future: the node's clock was taken", ts)
	}
}

// TestStatusPatchesWaitForEveryManager checks the upgrade gate of store
// batch version 2: agents' status reports are written as status patches
// only once every Raft member's node says its binary reads them; until
// then (a manager not upgraded, or not described yet) as whole tasks.
func TestStatusPatchesWaitForEveryManager(t *testing.T) {
	st := state.New()
	r := &storeRaft{store: st, members: []raft.Member{{ID: "m1"}, {ID: "m2"}}}
	d := &Dispatcher{Store: st, Raft: r}
	node := func(id string, v uint32) *swarmpb.Node {
		return &swarmpb.Node{Id: id, Description: &swarmpb.NodeDescription{StoreBatchVersion: v}}
	}
	dtApply(t, r, state.Create(node("m1", 2)), state.Create(node("m2", 1)),
		state.Create(dtTask("x", "A", swarmpb.TaskState_TASK_STATE_ASSIGNED)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := d.startSessions(ctx)
	defer s.stop()
	report := func(st swarmpb.TaskState) *swarmpb.StoreAction {
		t.Helper()
		req := &statusRequest{nodeID: "A", done: make(chan error, 1),
			updates: []*swarmpb.TaskStatusUpdate{{TaskId: "x", Status: &swarmpb.TaskStatus{State: st}}}}
		s.updates <- req
		if err := <-req.done; err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if n := len(r.last.GetActions()); n != 1 {
			t.Fatalf("%d actions written, want 1", n)
		}
		return r.last.GetActions()[0]
	}
	if a := report(swarmpb.TaskState_TASK_STATE_STARTING); a.GetTaskStatus() != nil || a.GetTask().GetStatus().GetState() != swarmpb.TaskState_TASK_STATE_STARTING {
		t.Fatalf("with manager m2 at version 1 the report was written as %v, want the whole task", a)
	}
	var m2 *swarmpb.Node
	st.View(func(tx state.ReadTx) { m2 = proto.Clone(tx.GetNode("m2")).(*swarmpb.Node) })
	m2.Description.StoreBatchVersion = 2
	dtApply(t, r, state.Update(m2))
	if a := report(swarmpb.TaskState_TASK_STATE_RUNNING); a.GetTaskStatus() == nil {
		t.Fatalf("with every manager at version 2 the report was written as %v, want a status patch", a)
	}
	if got := dtGet(st, "x").GetStatus().GetState(); got != swarmpb.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("task x is %v, want RUNNING", got)
	}
}
