package orchestrator

import (
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/scheduler"
)

func nodeKey(t *swarmpb.Task) string { return t.NodeId }

// eligibleGlobal reports whether a global service should run on n, and
// whether an existing task may stay there (pause keeps tasks, takes no new
// ones).
func eligibleGlobal(n *swarmpb.Node, cons []scheduler.Constraint) (place, keep bool) {
	if n.Status != swarmpb.NodeStatus_NODE_STATUS_READY {
		return false, n.Status != swarmpb.NodeStatus_NODE_STATUS_DOWN
	}
	for _, c := range cons {
		if !c.Match(n) {
			return false, false
		}
	}
	switch n.GetSpec().GetAvailability() {
	case swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN:
		return false, false
	case swarmpb.NodeAvailability_NODE_AVAILABILITY_PAUSE:
		return false, true
	}
	return true, true
}

// reconcileGlobal keeps one live task on every eligible node, new nodes
// included, and none elsewhere.
func (o *Orchestrator) reconcileGlobal(p *plan, svc *swarmpb.Service) {
	cons, _ := scheduler.ParseConstraints(svc.Spec.GetPlacement().GetConstraints())
	byNode := slotTasks(p.tx.TasksByService(svc.Id), nodeKey)
	var lives []*swarmpb.Task
	for _, n := range p.tx.ListNodes() {
		place, keep := eligibleGlobal(n, cons)
		tasks := byNode[n.Id]
		delete(byNode, n.Id)
		var live *swarmpb.Task
		for i, t := range tasks {
			if !active(t) {
				continue
			}
			if live != nil || !keep {
				if p.room(1) {
					p.shutdown(t, "node no longer eligible")
				}
				continue
			}
			live = t
			if ended(t) {
				now, at := p.restartDue(svc, tasks[i:], t)
				if now && p.room(2) {
					p.shutdown(t, "restarting")
					live = p.create(svc, 0, n.Id)
				} else if !at.IsZero() {
					p.wakeAt(at)
				}
			}
		}
		if live == nil && place && p.room(1) {
			live = p.create(svc, 0, n.Id)
		}
		if live != nil {
			lives = append(lives, live)
		}
		p.reapHistory(tasks)
	}
	// Tasks on nodes that no longer exist.
	for _, tasks := range byNode {
		for _, t := range tasks {
			if p.room(1) {
				p.shutdown(t, "node removed")
			}
		}
		p.reapHistory(tasks)
	}
	o.rollingUpdateTasks(p, svc, lives, func(t *swarmpb.Task) *swarmpb.Task { return p.create(svc, 0, t.NodeId) })
}
