package orchestrator

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/raftswarm/raftswarm/internal/identity"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// plan accumulates the writes of one reconciliation over one consistent
// view. Every whole-object write carries the version it read, so a
// concurrent change makes the batch fail and the next pass redo it from
// fresh state. A change to a task that is only its desired state (and the
// status of a task no agent will report on) is written as a desired-state
// patch when every manager reads them (patches): it applies to the task
// as stored and does not conflict with the agents' status reports, which
// at 100,000 tasks made a scale-down take pass after pass.
//
// A plan is bounded: it creates, changes and deletes at most limit tasks
// (room reports whether more fit). What does not fit is left for the next
// pass, which runs at once (more), so a service of any size is reconciled
// in steps whose memory and Raft entries are bounded, and other writes
// (service rm, scale) get in between.
type plan struct {
	tx      *view
	now     time.Time
	wake    time.Time
	history int
	limit   int
	more    bool

	updated map[string]*swarmpb.Task
	// read holds the task each updated one was copied from (mod).
	read  map[string]*swarmpb.Task
	order []string
	// patches: write desired-state-only changes as patches
	// (state.UpdateTaskDesired); every manager reads them.
	patches bool
	created []*swarmpb.Task
	// createdIn counts the tasks this plan creates per slot (create), so
	// that reapHistory counts them among the slot's kept tasks in the same
	// pass: a task's creation wakes no pass to trim its slot afterwards.
	createdIn map[slotRef]int
	// fills are the created tasks that fill a slot which had no live
	// task: they depend on no change of this plan (fill).
	fills    map[*swarmpb.Task]bool
	deleted  map[string]*swarmpb.Task
	services []*swarmpb.Service

	failedSeen map[string]time.Time // the orchestrator's (restart.go); nil in some tests
}

func newPlan(v *view, now time.Time, limit int) *plan {
	return &plan{tx: v, now: now, wake: now.Add(time.Hour), history: v.history, limit: limit,
		updated: map[string]*swarmpb.Task{}, read: map[string]*swarmpb.Task{}, deleted: map[string]*swarmpb.Task{}}
}

// room reports whether n more task writes fit in this plan; when they do
// not, the plan asks for another pass.
func (p *plan) room(n int) bool {
	if len(p.created)+len(p.updated)+len(p.deleted)+n <= p.limit {
		return true
	}
	p.more = true
	return false
}

// used is how many task writes the plan holds.
func (p *plan) used() int { return len(p.created) + len(p.updated) + len(p.deleted) }

// left is how many more task writes fit.
func (p *plan) left() int {
	return max(0, p.limit-len(p.created)-len(p.updated)-len(p.deleted))
}

func (p *plan) wakeAt(t time.Time) {
	if t.Before(p.wake) {
		p.wake = t
	}
}

// mod returns a writable copy of t, the same one on every call. The copy
// is shallow: its fields may be set, but what they point to (the spec,
// the status, the meta) is t's, stored and immutable, and is replaced,
// never modified. That is what lets actions tell a change of desired state
// and status alone (a patch) from any other, by comparing pointers.
func (p *plan) mod(t *swarmpb.Task) *swarmpb.Task {
	if c, ok := p.updated[t.Id]; ok {
		return c
	}
	c := copyTask(t)
	if c.Status == nil {
		c.Status = &swarmpb.TaskStatus{}
	}
	p.updated[t.Id] = c
	p.read[t.Id] = t
	p.order = append(p.order, t.Id)
	return c
}

// copyTask is a shallow copy of t. TestCopyTaskCopiesEveryField keeps it,
// and onlyDesired, in step with the Task message.
func copyTask(t *swarmpb.Task) *swarmpb.Task {
	return &swarmpb.Task{
		Id: t.Id, Meta: t.Meta, ServiceId: t.ServiceId, ServiceName: t.ServiceName, Slot: t.Slot, NodeId: t.NodeId,
		DesiredState: t.DesiredState, Status: t.Status, Spec: t.Spec, SpecVersion: t.SpecVersion,
		SchedulingMessage: t.SchedulingMessage,
	}
}

// onlyDesired reports whether c, mod's copy of t, differs from t in its
// desired state and status only: the change a desired-state patch makes.
func onlyDesired(t, c *swarmpb.Task) bool {
	return c.Id == t.Id && c.Meta == t.Meta && c.ServiceId == t.ServiceId && c.ServiceName == t.ServiceName &&
		c.Slot == t.Slot && c.NodeId == t.NodeId && c.Spec == t.Spec && c.SpecVersion == t.SpecVersion &&
		c.SchedulingMessage == t.SchedulingMessage
}

// taskUpdate is the action that writes c, mod's copy of t: a desired-state
// patch if that is all that changed and every manager reads patches, else
// the whole task, checked against the version read.
func (p *plan) taskUpdate(t, c *swarmpb.Task) *swarmpb.StoreAction {
	if !p.patches || !onlyDesired(t, c) {
		return state.Update(c)
	}
	if c.Status == t.Status {
		return state.UpdateTaskDesired(c.Id, c.DesiredState, nil, "") // the node guards the status only
	}
	return state.UpdateTaskDesired(c.Id, c.DesiredState, c.Status, t.NodeId)
}

// shutdown asks for t to stop. A task that never reached a node, or whose
// node is gone or down, is marked stopped at once: no agent will.
func (p *plan) shutdown(t *swarmpb.Task, why string) {
	if t.DesiredState > swarmpb.TaskState_TASK_STATE_RUNNING {
		return
	}
	c := p.mod(t)
	c.DesiredState = swarmpb.TaskState_TASK_STATE_SHUTDOWN
	if c.Status.State >= swarmpb.TaskState_TASK_STATE_COMPLETE {
		return
	}
	switch {
	case c.NodeId == "" || c.Status.State < swarmpb.TaskState_TASK_STATE_ASSIGNED:
		c.Status = &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_SHUTDOWN, Message: why, Timestamp: p.now.UnixNano()}
	case !nodeUp(p.tx.GetNode(c.NodeId)):
		c.Status = &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_ORPHANED, Message: "node is down: " + why,
			Timestamp: p.now.UnixNano(), ContainerId: c.Status.ContainerId}
	}
}

func (p *plan) remove(t *swarmpb.Task) {
	if _, ok := p.deleted[t.Id]; !ok {
		p.deleted[t.Id] = t
	}
}

func (p *plan) create(svc *swarmpb.Service, slot uint64, nodeID string) *swarmpb.Task {
	t := &swarmpb.Task{
		Id: identity.NewID(), ServiceId: svc.Id, ServiceName: svc.Spec.Name, Slot: slot, NodeId: nodeID,
		DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
		Status:       &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_PENDING, Message: "pending task scheduling", Timestamp: p.now.UnixNano()},
		Spec:         svc.Spec, SpecVersion: svc.SpecVersion,
		Meta: &swarmpb.Meta{CreatedAt: p.now.UnixNano()},
	}
	p.created = append(p.created, t)
	if p.createdIn == nil {
		p.createdIn = map[slotRef]int{}
	}
	p.createdIn[slotOf(t)]++
	return t
}

// slotRef names a slot: a replicated service's slot number, or a global
// service's node.
type slotRef struct {
	service string
	slot    uint64
	node    string
}

func slotOf(t *swarmpb.Task) slotRef {
	if t.Slot != 0 {
		return slotRef{service: t.ServiceId, slot: t.Slot}
	}
	return slotRef{service: t.ServiceId, node: t.NodeId}
}

func (p *plan) updateService(s *swarmpb.Service) { p.services = append(p.services, s) }

// fill marks t, just created, as filling a slot that had no live task.
func (p *plan) fill(t *swarmpb.Task) *swarmpb.Task {
	if p.fills == nil {
		p.fills = map[*swarmpb.Task]bool{}
	}
	p.fills[t] = true
	return t
}

// actions returns the plan's writes: changes to existing objects, the
// creation of tasks that replace others (creates), and the creation of
// tasks that fill empty slots (fills). They go in separate batches: a
// creation cannot conflict; a replacement must not be written unless the
// change that stops the task it replaces was; a fill depends on no change.
func (p *plan) actions() (changes, creates, fills []*swarmpb.StoreAction) {
	var out []*swarmpb.StoreAction
	for _, s := range p.services {
		out = append(out, state.Update(s))
	}
	for _, id := range p.order {
		if _, gone := p.deleted[id]; !gone {
			out = append(out, p.taskUpdate(p.read[id], p.updated[id]))
		}
	}
	for _, t := range p.deleted {
		out = append(out, state.DeleteTask(t.Id))
	}
	for _, t := range p.created {
		if p.fills[t] {
			fills = append(fills, state.Create(t))
		} else {
			creates = append(creates, state.Create(t))
		}
	}
	return out, creates, fills
}

// current returns t as this plan will write it.
func (p *plan) current(t *swarmpb.Task) *swarmpb.Task {
	if c, ok := p.updated[t.Id]; ok {
		return c
	}
	return t
}

func nodeUp(n *swarmpb.Node) bool {
	return n != nil && n.Status != swarmpb.NodeStatus_NODE_STATUS_DOWN
}

// ended reports a task whose container is no longer running.
func ended(t *swarmpb.Task) bool {
	return t.GetStatus().GetState() > swarmpb.TaskState_TASK_STATE_RUNNING
}

func active(t *swarmpb.Task) bool { return t.DesiredState <= swarmpb.TaskState_TASK_STATE_RUNNING }

func createdAt(t *swarmpb.Task) int64 { return t.GetMeta().GetCreatedAt() }

func statusTime(t *swarmpb.Task) time.Time { return time.Unix(0, t.GetStatus().GetTimestamp()) }

// slotTasks groups a service's tasks by slot key; within a key the newest
// task comes first.
//
// Every pass over a service runs it on all the service's tasks (100,000
// at the largest), so it is kept lean: one map sized once, and no sort
// for the usual slot of one task.
func slotTasks[K comparable](tasks []*swarmpb.Task, key func(*swarmpb.Task) K) map[K][]*swarmpb.Task {
	out := make(map[K][]*swarmpb.Task, len(tasks))
	for _, t := range tasks {
		k := key(t)
		out[k] = append(out[k], t)
	}
	for _, ts := range out {
		if len(ts) > 1 {
			slices.SortFunc(ts, newestFirst)
		}
	}
	return out
}

// newestFirst orders tasks by creation, newest first, then by ID.
func newestFirst(a, b *swarmpb.Task) int {
	if c := cmp.Compare(createdAt(b), createdAt(a)); c != 0 {
		return c
	}
	return strings.Compare(b.Id, a.Id)
}

// reapHistory deletes a slot's oldest finished tasks beyond the history
// limit (the live task counts as one). Deleting a task tells its agent to
// remove the container.
func (p *plan) reapHistory(tasks []*swarmpb.Task) {
	if len(tasks) == 0 {
		return
	}
	kept := p.createdIn[slotOf(tasks[0])] // newer than any stored, and live
	for _, t := range tasks {
		t = p.current(t)
		if active(t) {
			kept++
			continue
		}
		if kept < p.history {
			kept++
			continue
		}
		if finished(p.tx, t) && p.room(1) {
			p.remove(t)
		}
	}
}

// finished reports a task that will not change again: it ended, never
// reached a node, or its node is gone or down.
func finished(tx *view, t *swarmpb.Task) bool {
	return ended(t) || t.NodeId == "" || !nodeUp(tx.GetNode(t.NodeId))
}

// reapOrphans handles tasks whose service was removed: stop them, and
// delete them once stopped.
func (p *plan) reapOrphans(tasks []*swarmpb.Task) {
	for _, t := range tasks {
		if p.tx.GetService(t.ServiceId) != nil {
			continue
		}
		if !p.room(2) {
			return
		}
		if t.DesiredState < swarmpb.TaskState_TASK_STATE_REMOVE {
			c := p.mod(t)
			p.shutdown(t, "service removed")
			c.DesiredState = swarmpb.TaskState_TASK_STATE_REMOVE
			t = c
		}
		if finished(p.tx, t) {
			p.remove(t)
		}
	}
}
