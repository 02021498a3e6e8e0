package events

import (
	"strconv"
	"strings"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// hostnames maps node IDs to hostnames for task events. The journal keeps
// it from the view it starts from and the node events that follow, so a
// task event names its node as the replica knew it at that index, the same
// on every manager.
type hostnames map[string]string

func (h hostnames) name(nodeID string) string {
	if n, ok := h[nodeID]; ok && n != "" {
		return n
	}
	return nodeID
}

func (h hostnames) track(ev state.Event) {
	n := ev.Node()
	if n == nil {
		return
	}
	if ev.Kind == state.EventDelete {
		delete(h, n.Id)
		return
	}
	h[n.Id] = n.GetDescription().GetHostname()
}

// enumName turns NODE_STATUS_READY into "ready" given the prefix "NODE_STATUS_".
func enumName(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}

func actionOf(k state.EventKind) string {
	switch k {
	case state.EventCreate:
		return ActionCreate
	case state.EventDelete:
		return ActionRemove
	}
	return ActionUpdate
}

// changed sets key.old and key.new when old and new differ; with no old
// value (a create or a remove) it sets key alone.
func changed(attr map[string]string, key, old, new string, hasOld bool) {
	switch {
	case !hasOld:
		if new != "" {
			attr[key] = new
		}
	case old != new:
		attr[key+".old"] = old
		attr[key+".new"] = new
	}
}

// taskFacts is what a task event says, taken from the store's event when
// it is applied: strings and states only, so that keeping it holds on to
// no task (a removed task's spec may be large), and the node's hostname as
// it was then.
type taskFacts struct {
	id, svc, svcID, nodeID, node string
	err                          string // set only when the event reports it
	slot                         uint64
	state, oldState              swarmpb.TaskState
	desired, oldDesired          swarmpb.TaskState
	hasOld                       bool
}

// taskFactsOf returns the facts of a task event; ok is false for other events.
func taskFactsOf(ev state.Event, names hostnames) (f taskFacts, ok bool) {
	o := ev.Task()
	if o == nil {
		return f, false
	}
	old, _ := ev.Old.(*swarmpb.Task)
	f = taskFacts{id: o.Id, svc: o.GetServiceName(), svcID: o.GetServiceId(), nodeID: o.GetNodeId(), slot: o.GetSlot(),
		state: o.GetStatus().GetState(), oldState: old.GetStatus().GetState(),
		desired: o.GetDesiredState(), oldDesired: old.GetDesiredState(), hasOld: ev.Old != nil}
	if f.svc == "" {
		f.svc = o.GetSpec().GetName()
	}
	if f.nodeID != "" {
		f.node = names.name(f.nodeID)
	}
	if e := o.GetStatus().GetErr(); e != "" && (!f.hasOld || e != old.GetStatus().GetErr()) {
		f.err = e
	}
	return f, true
}

// describeTask makes the ClusterEvent of a task event from its facts.
func describeTask(f *taskFacts, kind state.EventKind, index uint64, at int64, seq uint32) *swarmpb.ClusterEvent {
	out := &swarmpb.ClusterEvent{Index: index, Seq: seq, Time: at, Action: actionOf(kind), Attributes: map[string]string{}, Type: TypeTask, Id: f.id}
	attr := out.Attributes
	if f.slot > 0 {
		out.Name = f.svc + "." + strconv.FormatUint(f.slot, 10)
	} else {
		out.Name = f.svc + "." + f.nodeID
	}
	attr["service"], attr["service.id"] = f.svc, f.svcID
	if f.nodeID != "" {
		attr["node.id"], attr["node"] = f.nodeID, f.node
	}
	changed(attr, "state", enumName(f.oldState.String(), "TASK_STATE_"), enumName(f.state.String(), "TASK_STATE_"), f.hasOld)
	changed(attr, "desiredstate", enumName(f.oldDesired.String(), "TASK_STATE_"), enumName(f.desired.String(), "TASK_STATE_"), f.hasOld)
	if f.err != "" {
		attr["error"] = truncate(f.err, 256)
	}
	return out
}

// convert describes one store event. Objects are the store's immutable
// values; only strings are copied out.
func convert(ev state.Event, seq uint32, names hostnames) *swarmpb.ClusterEvent {
	if f, ok := taskFactsOf(ev, names); ok {
		return describeTask(&f, ev.Kind, ev.Index, ev.Time, seq)
	}
	out := &swarmpb.ClusterEvent{Index: ev.Index, Seq: seq, Time: ev.Time, Action: actionOf(ev.Kind), Attributes: map[string]string{}}
	attr := out.Attributes
	hasOld := ev.Old != nil
	switch o := ev.Object.(type) {
	case *swarmpb.Cluster:
		out.Type, out.Id, out.Name = TypeCluster, o.Id, o.Name
		old, _ := ev.Old.(*swarmpb.Cluster)
		if hasOld {
			changed(attr, "autolock", strconv.FormatBool(old.GetSettings().GetAutolock()), strconv.FormatBool(o.GetSettings().GetAutolock()), true)
		}
	case *swarmpb.Node:
		out.Type, out.Id, out.Name = TypeNode, o.Id, o.GetDescription().GetHostname()
		old, _ := ev.Old.(*swarmpb.Node)
		changed(attr, "state", enumName(old.GetStatus().String(), "NODE_STATUS_"), enumName(o.GetStatus().String(), "NODE_STATUS_"), hasOld)
		changed(attr, "availability", enumName(old.GetSpec().GetAvailability().String(), "NODE_AVAILABILITY_"), enumName(o.GetSpec().GetAvailability().String(), "NODE_AVAILABILITY_"), hasOld)
		changed(attr, "role", enumName(old.GetRole().String(), "NODE_ROLE_"), enumName(o.GetRole().String(), "NODE_ROLE_"), hasOld)
		if hasOld && old.GetDescription().GetHostname() != o.GetDescription().GetHostname() {
			changed(attr, "name", old.GetDescription().GetHostname(), o.GetDescription().GetHostname(), true)
		}
	case *swarmpb.Service:
		out.Type, out.Id, out.Name = TypeService, o.Id, o.GetSpec().GetName()
		old, _ := ev.Old.(*swarmpb.Service)
		changed(attr, "image", old.GetSpec().GetContainer().GetImage(), o.GetSpec().GetContainer().GetImage(), hasOld)
		if o.GetSpec().GetMode() == swarmpb.ServiceMode_SERVICE_MODE_REPLICATED {
			changed(attr, "replicas", strconv.FormatUint(old.GetSpec().GetReplicas(), 10), strconv.FormatUint(o.GetSpec().GetReplicas(), 10), hasOld)
		} else if !hasOld {
			attr["mode"] = "global"
		}
		if hasOld {
			changed(attr, "updatestate", updateState(old), updateState(o), true)
		}
	case *swarmpb.Network:
		out.Type, out.Id, out.Name = TypeNetwork, o.Id, o.GetSpec().GetName()
	case *swarmpb.Secret:
		out.Type, out.Id, out.Name = TypeSecret, o.Id, o.Name
	case *swarmpb.Config:
		out.Type, out.Id, out.Name = TypeConfig, o.Id, o.Name
	default:
		out.Type = "unknown"
	}
	return out
}

func updateState(s *swarmpb.Service) string {
	u := s.GetUpdateStatus()
	if u == nil {
		return ""
	}
	if st := u.GetUpdateState(); st != swarmpb.UpdateState_UPDATE_STATE_UNSPECIFIED {
		return enumName(st.String(), "UPDATE_STATE_")
	}
	return u.GetState()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
