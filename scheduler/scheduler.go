package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// FailureWindow is how long a node stays last in line for a service after a
// task of that service failed on it.
const FailureWindow = 5 * time.Minute

// ReasonNoNodes is the Reason of a task that cannot be placed because the
// cluster has no nodes at all.
const ReasonNoNodes = "no suitable node (no nodes in the cluster)"

// Decision is the outcome for one task. NodeID == "" means not placed, and
// Reason then says why, in words meant for users.
type Decision struct {
	TaskID string
	NodeID string
	Reason string
}

// nodeInfo is the scheduler's view of one node: the last Node object seen and
// the load of the tasks counted against it. An entry with node == nil stands
// for a node that is not (or no longer) in the cluster but still has counted
// tasks, so that their later removal keeps the books straight.
type nodeInfo struct {
	id   string
	node *swarmpb.Node

	cpu, mem       int64 // capacity
	resCPU, resMem int64 // reserved by counted tasks
	total          int   // counted tasks
	perService     map[string]int
	ports          map[hostPort]int
	failures       map[string]time.Time // service id -> last failure
}

// taskRec remembers what a counted task contributed so that RemoveTask can
// undo exactly that, whatever the task object passed to it contains.
type taskRec struct {
	node     *nodeInfo
	service  string
	cpu, mem int64
	ports    []hostPort
}

// Scheduler is the in-memory placement engine. It is not safe for concurrent
// use; the scheduling loop owns it. It keeps references to the Node and Task
// objects passed to it and does not modify them; callers must not modify them
// either (state-store objects are immutable snapshots).
type Scheduler struct {
	nodes map[string]*nodeInfo
	tasks map[string]taskRec

	sorted []*nodeInfo // live nodes by id; nil when it must be rebuilt
}

// New returns an empty Scheduler.
func New() *Scheduler {
	return &Scheduler{nodes: map[string]*nodeInfo{}, tasks: map[string]taskRec{}}
}

// Counts reports whether a task assigned to a node counts against it: both
// its desired and its observed state are at most RUNNING.
func Counts(t *swarmpb.Task) bool {
	return t.GetDesiredState() <= swarmpb.TaskState_TASK_STATE_RUNNING &&
		t.GetStatus().GetState() <= swarmpb.TaskState_TASK_STATE_RUNNING
}

func (s *Scheduler) info(id string) *nodeInfo {
	n := s.nodes[id]
	if n == nil {
		n = &nodeInfo{id: id}
		s.nodes[id] = n
	}
	return n
}

// UpsertNode adds a node or replaces what the scheduler knows of it
// (availability, labels, status, description). Counted tasks are kept.
func (s *Scheduler) UpsertNode(n *swarmpb.Node) {
	if n == nil || n.GetId() == "" {
		return
	}
	ni := s.info(n.GetId())
	if ni.node == nil {
		s.sorted = nil
	}
	ni.node = n
	r := n.GetDescription().GetResources()
	ni.cpu, ni.mem = max(r.GetNanoCpus(), 0), max(r.GetMemoryBytes(), 0)
}

// RemoveNode forgets a node. Tasks still counted on it stay counted until
// RemoveTask, so that a node coming back finds its load intact.
func (s *Scheduler) RemoveNode(id string) {
	ni := s.nodes[id]
	if ni == nil {
		return
	}
	if ni.node != nil {
		s.sorted = nil
	}
	ni.node = nil
	ni.failures = nil
	if ni.total == 0 {
		delete(s.nodes, id)
	}
}

// AddTask counts a task assigned to t.NodeId against that node: its
// reservations, its service's count there and its host-mode ports. Adding a
// task again replaces the previous record. A task that does not count (no
// node, or past RUNNING; see Counts) is removed instead, so the loop may call
// AddTask for every task update.
func (s *Scheduler) AddTask(t *swarmpb.Task) {
	if t == nil || t.GetId() == "" {
		return
	}
	s.removeRec(t.GetId())
	if t.GetNodeId() == "" || !Counts(t) {
		return
	}
	spec := t.GetSpec()
	res := spec.GetResources().GetReservations()
	s.record(t.GetId(), s.info(t.GetNodeId()), t.GetServiceId(),
		max(res.GetNanoCpus(), 0), max(res.GetMemoryBytes(), 0), hostPorts(spec))
}

// RemoveTask stops counting a task. It is idempotent; only the task id is
// used.
func (s *Scheduler) RemoveTask(t *swarmpb.Task) {
	if t == nil {
		return
	}
	s.removeRec(t.GetId())
}

// NodeFailed records that a task of serviceID failed on nodeID at `at`: for
// FailureWindow the node ranks after every other eligible node for that
// service.
func (s *Scheduler) NodeFailed(nodeID, serviceID string, at time.Time) {
	ni := s.nodes[nodeID]
	if ni == nil || ni.node == nil {
		return
	}
	if ni.failures == nil {
		ni.failures = map[string]time.Time{}
	}
	for svc, t := range ni.failures { // keep the map small
		if at.Sub(t) >= FailureWindow {
			delete(ni.failures, svc)
		}
	}
	if prev, ok := ni.failures[serviceID]; !ok || at.After(prev) {
		ni.failures[serviceID] = at
	}
}

func (n *nodeInfo) recentlyFailed(serviceID string, now time.Time) bool {
	at, ok := n.failures[serviceID]
	return ok && now.Sub(at) < FailureWindow
}

func (s *Scheduler) record(taskID string, n *nodeInfo, service string, cpu, mem int64, ports []hostPort) {
	if _, dup := s.tasks[taskID]; dup { // the same task twice in one batch
		s.removeRec(taskID)
	}
	s.tasks[taskID] = taskRec{node: n, service: service, cpu: cpu, mem: mem, ports: ports}
	n.total++
	if n.perService == nil {
		n.perService = map[string]int{}
	}
	n.perService[service]++
	n.resCPU += cpu
	n.resMem += mem
	if len(ports) > 0 && n.ports == nil {
		n.ports = map[hostPort]int{}
	}
	for _, p := range ports {
		n.ports[p]++
	}
}

func (s *Scheduler) removeRec(taskID string) {
	r, ok := s.tasks[taskID]
	if !ok {
		return
	}
	delete(s.tasks, taskID)
	n := r.node
	n.total--
	if c := n.perService[r.service] - 1; c > 0 {
		n.perService[r.service] = c
	} else {
		delete(n.perService, r.service)
	}
	n.resCPU -= r.cpu
	n.resMem -= r.mem
	for _, p := range r.ports {
		if c := n.ports[p] - 1; c > 0 {
			n.ports[p] = c
		} else {
			delete(n.ports, p)
		}
	}
	if n.node == nil && n.total == 0 && s.nodes[n.id] == n {
		delete(s.nodes, n.id)
	}
}

// liveNodes returns the nodes in the cluster sorted by id.
func (s *Scheduler) liveNodes() []*nodeInfo {
	if s.sorted == nil {
		s.sorted = make([]*nodeInfo, 0, len(s.nodes))
		for _, n := range s.nodes {
			if n.node != nil {
				s.sorted = append(s.sorted, n)
			}
		}
		slices.SortFunc(s.sorted, func(a, b *nodeInfo) int { return strings.Compare(a.id, b.id) })
	}
	return s.sorted
}

type groupKey struct {
	service string
	version uint64
}

// Schedule decides a batch of tasks and returns one Decision per task, in
// input order. Placed tasks are recorded as if AddTask'ed.
//
// Tasks with NodeId == "" are placed: tasks of one service with the same
// spec_version form a group, filters run once per (group, node), and the
// group's tasks are then handed out one by one to the best-ranked eligible
// node, kept in a heap. Ranking: spread preferences first (the service's
// tasks balanced over each descriptor's values, nodes without the label
// forming a group of their own), then nodes that did not recently fail the
// service, then fewest tasks of the service, then fewest tasks overall, then
// node id. The recent-failure rule comes before the counts so that a
// replacement task does not go straight back to the node it just failed on.
//
// Tasks with NodeId set (global services) are only validated against that
// node. They are decided first, since they have no alternative.
//
// The result depends only on the scheduler's state and the input.
func (s *Scheduler) Schedule(tasks []*swarmpb.Task, now time.Time) []Decision {
	out := make([]Decision, len(tasks))
	groups := map[groupKey]int{}
	type group struct {
		idx []int
	}
	var order []group
	for i, t := range tasks {
		if t == nil {
			out[i].Reason = "no task"
			continue
		}
		out[i].TaskID = t.GetId()
		if t.GetNodeId() != "" {
			s.validateAssigned(t, &out[i])
			continue
		}
		s.removeRec(t.GetId()) // a pending task does not count anywhere
		k := groupKey{t.GetServiceId(), t.GetSpecVersion()}
		gi, ok := groups[k]
		if !ok {
			gi = len(order)
			groups[k] = gi
			order = append(order, group{})
		}
		order[gi].idx = append(order[gi].idx, i)
	}
	for _, g := range order {
		s.scheduleGroup(tasks, g.idx, out, now)
	}
	return out
}

func (s *Scheduler) validateAssigned(t *swarmpb.Task, d *Decision) {
	s.removeRec(t.GetId()) // do not conflict with itself
	n := s.nodes[t.GetNodeId()]
	if n == nil || n.node == nil {
		d.Reason = fmt.Sprintf("no suitable node (node %s is not in the cluster)", t.GetNodeId())
		return
	}
	g := newTaskGroup(t)
	if g.err != nil {
		d.Reason = g.err.Error()
		return
	}
	if fi := firstFailing(g, n, 0); fi >= 0 {
		failed := make([]int, len(filters))
		failed[fi] = 1
		d.Reason = explain(failed)
		return
	}
	s.record(t.GetId(), n, g.serviceID, g.cpu, g.mem, g.ports)
	d.NodeID = n.id
}

func (s *Scheduler) scheduleGroup(tasks []*swarmpb.Task, idx []int, out []Decision, now time.Time) {
	g := newTaskGroup(tasks[idx[0]])
	fail := func(reason string, from int) {
		for _, i := range idx[from:] {
			out[i].Reason = reason
		}
	}
	if g.err != nil {
		fail(g.err.Error(), 0)
		return
	}
	live := s.liveNodes()
	if len(live) == 0 {
		fail(ReasonNoNodes, 0)
		return
	}

	failed := make([]int, len(filters))
	cands := make([]candidate, 0, len(live))
	for rank, n := range live {
		if fi := firstFailing(g, n, 0); fi >= 0 {
			failed[fi]++
			continue
		}
		cands = append(cands, candidate{
			n:      n,
			rank:   rank,
			failed: n.recentlyFailed(g.serviceID, now),
			svc:    n.perService[g.serviceID],
		})
	}
	root := buildTree(g, cands)

	for k, i := range idx {
		c := root.pick()
		if c == nil {
			fail(explain(failed), k)
			return
		}
		t := tasks[i]
		s.record(t.GetId(), c.n, g.serviceID, g.cpu, g.mem, g.ports)
		out[i].NodeID = c.n.id
		c.svc++
		leaf := c.leaf
		if fi := firstFailing(g, c.n, firstDynamic); fi >= 0 {
			failed[fi]++
			leaf.cands.remove(c.index)
		} else {
			leaf.cands.fix(c.index)
		}
		leaf.placed()
	}
}
