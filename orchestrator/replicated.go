package orchestrator

import (
	"container/heap"
	"slices"
	"sort"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func slotKey(t *swarmpb.Task) uint64 { return t.Slot }

// reconcileReplicated keeps spec.replicas slots, each with one live task:
// tasks on down, drained or removed nodes are replaced, ended tasks are
// restarted per the restart policy, surplus slots are shut down (tasks
// that are not running first, then those on the busiest nodes), outdated
// tasks are rolled to the current spec, and old history is reaped.
//
// Nothing here is proportional to spec.replicas: the work is bounded by
// the tasks that exist plus what the plan has room to create, so a service
// asking for a billion replicas is grown a plan's worth at a time (and at
// most to spec.MaxReplicasLimit, whatever a stored spec says).
func (o *Orchestrator) reconcileReplicated(p *plan, svc *swarmpb.Service) {
	replicas := o.replicas(svc)
	slots := slotTasks(p.tx.TasksByService(svc.Id), slotKey)
	live := map[uint64]*swarmpb.Task{} // slot -> its live task (possibly newly created)
	perNode := map[string]int{}

	keys := make([]uint64, 0, len(slots))
	for k := range slots {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	for _, slot := range keys {
		tasks := slots[slot]
		if t := o.liveTask(p, svc, tasks); t != nil {
			live[slot] = t
			if t.NodeId != "" {
				perNode[t.NodeId]++
			}
		}
	}

	// Scale down: tasks that are not running go first, then tasks on the
	// nodes running the most of this service.
	if excess := uint64(len(live)) - min(replicas, uint64(len(live))); excess > 0 {
		// Shutting tasks down is bounded by the tasks that exist, not by
		// the plan: a pass takes up to maxPassShutdowns of them, as each
		// pass reads every task of the service and N/maxPassTasks passes
		// made scaling N tasks down quadratic.
		n := min(int(excess), max(p.left(), maxPassShutdowns-p.used()))
		if n < int(excess) {
			p.more = true
		}
		for _, s := range scaleDownVictims(live, perNode, n) {
			t := live[s]
			if t.GetMeta().GetVersion() == 0 {
				p.dropCreated(t) // created by this very plan: just don't
			} else {
				p.shutdown(t, "scaled down")
			}
			delete(live, s)
		}
	}
	// Scale up: fill the lowest free slot numbers.
	for slot := uint64(1); uint64(len(live)) < replicas && p.room(1); slot++ {
		if _, ok := live[slot]; !ok {
			live[slot] = p.fill(p.create(svc, slot, ""))
		}
	}
	o.rollingUpdate(p, svc, live, func(t *swarmpb.Task) *swarmpb.Task { return p.create(svc, t.Slot, "") })
	for _, tasks := range slots {
		p.reapHistory(tasks)
	}
}

// liveTask settles one slot and returns its live task, or nil if the slot
// has none left (the caller may refill it). tasks is newest first.
func (o *Orchestrator) liveTask(p *plan, svc *swarmpb.Service, tasks []*swarmpb.Task) *swarmpb.Task {
	var lives []*swarmpb.Task
	if len(tasks) == 1 { // the usual slot: no copy
		if active(tasks[0]) {
			lives = tasks
		}
	} else {
		for _, t := range tasks {
			if active(t) {
				lives = append(lives, t)
			}
		}
	}
	if len(lives) == 0 {
		return nil
	}
	t := lives[0]
	// A start-first update runs the new task beside the old one; the old
	// one goes once the new one runs. Any other extra live task is a
	// leftover and is shut down.
	for _, old := range lives[1:] {
		if old.SpecVersion < t.SpecVersion && t.GetStatus().GetState() < swarmpb.TaskState_TASK_STATE_RUNNING && !ended(t) {
			continue
		}
		if p.room(1) {
			p.shutdown(old, "replaced")
		}
	}
	// A replacement below takes two writes; without room for them the
	// slot keeps its task until the next pass.
	node := p.tx.GetNode(t.NodeId)
	if t.NodeId != "" && (node == nil || node.Status == swarmpb.NodeStatus_NODE_STATUS_DOWN ||
		node.GetSpec().GetAvailability() == swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN) && p.room(2) {
		why := "node drained"
		if !nodeUp(node) {
			why = "node is down"
		}
		p.shutdown(t, why)
		return p.create(svc, t.Slot, "")
	}
	if ended(t) {
		now, at := p.restartDue(svc, tasks, t)
		if now && p.room(2) {
			p.shutdown(t, "restarting")
			return p.create(svc, t.Slot, "")
		}
		if !at.IsZero() {
			p.wakeAt(at)
		}
	}
	return t
}

// dropCreated forgets a task this plan was about to create.
func (p *plan) dropCreated(t *swarmpb.Task) {
	for i, c := range p.created {
		if c == t {
			p.created = append(p.created[:i], p.created[i+1:]...)
			p.createdIn[slotOf(t)]--
			return
		}
	}
}

// scaleDownVictims picks n slots to remove, greedily, so that each pick
// sees the node counts left by the previous ones.
func scaleDownVictims(live map[uint64]*swarmpb.Task, perNode map[string]int, n int) []uint64 {
	var notRunning []uint64
	byNode := map[string][]uint64{}
	for s, t := range live {
		if t.GetStatus().GetState() != swarmpb.TaskState_TASK_STATE_RUNNING {
			notRunning = append(notRunning, s)
		} else {
			byNode[t.NodeId] = append(byNode[t.NodeId], s)
		}
	}
	sort.Slice(notRunning, func(i, j int) bool { return notRunning[i] > notRunning[j] })
	var out []uint64
	for _, s := range notRunning {
		if len(out) == n {
			return out
		}
		out = append(out, s)
		perNode[live[s].NodeId]--
	}
	// The node with the most tasks of the service (then the lowest ID)
	// gives up its highest slot, one pick at a time: a heap keeps each
	// pick O(log nodes), where a scan of every node made scaling 100,000
	// tasks down on 1,000 nodes cost 10^8 steps.
	h := &victimHeap{}
	for node, slots := range byNode {
		sort.Slice(slots, func(i, j int) bool { return slots[i] < slots[j] }) // highest slot popped first
		h.nodes = append(h.nodes, victimNode{id: node, slots: slots, count: perNode[node]})
	}
	heap.Init(h)
	for len(out) < n && h.Len() > 0 {
		best := &h.nodes[0]
		out = append(out, best.slots[len(best.slots)-1])
		best.slots = best.slots[:len(best.slots)-1]
		best.count--
		perNode[best.id]--
		if len(best.slots) == 0 {
			heap.Pop(h)
		} else {
			heap.Fix(h, 0)
		}
	}
	return out
}

type victimNode struct {
	id    string
	slots []uint64
	count int // the node's live tasks of the service left
}

// victimHeap orders nodes by their count of the service's live tasks,
// most first, then by ID.
type victimHeap struct{ nodes []victimNode }

func (h *victimHeap) Len() int { return len(h.nodes) }
func (h *victimHeap) Less(i, j int) bool {
	a, b := &h.nodes[i], &h.nodes[j]
	if a.count != b.count {
		return a.count > b.count
	}
	return a.id < b.id
}
func (h *victimHeap) Swap(i, j int) { h.nodes[i], h.nodes[j] = h.nodes[j], h.nodes[i] }
func (h *victimHeap) Push(x any)    { h.nodes = append(h.nodes, x.(victimNode)) }
func (h *victimHeap) Pop() any {
	n := len(h.nodes) - 1
	x := h.nodes[n]
	h.nodes = h.nodes[:n]
	return x
}
