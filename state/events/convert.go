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

// nodeName is the hostname a task event names: that of the task's node
// when the event was applied ("" for other events and unassigned tasks).
func (h hostnames) nodeName(ev state.Event) string {
	if t := ev.Task(); t.GetNodeId() != "" {
		return h.name(t.GetNodeId())
	}
	return ""
}

// convert describes one store event; node is hostnames.nodeName of it,
// taken when it was applied. Objects are the store's immutable values;
// only strings are copied out.
func convert(ev state.Event, seq uint32, node string) *swarmpb.ClusterEvent {
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
	case *swarmpb.Task:
		out.Type, out.Id = TypeTask, o.Id
		svc := o.GetServiceName()
		if svc == "" {
			svc = o.GetSpec().GetName()
		}
		if o.GetSlot() > 0 {
			out.Name = svc + "." + strconv.FormatUint(o.GetSlot(), 10)
		} else {
			out.Name = svc + "." + o.GetNodeId()
		}
		attr["service"], attr["service.id"] = svc, o.GetServiceId()
		if o.GetNodeId() != "" {
			attr["node.id"], attr["node"] = o.GetNodeId(), node
		}
		old, _ := ev.Old.(*swarmpb.Task)
		changed(attr, "state", enumName(old.GetStatus().GetState().String(), "TASK_STATE_"), enumName(o.GetStatus().GetState().String(), "TASK_STATE_"), hasOld)
		changed(attr, "desiredstate", enumName(old.GetDesiredState().String(), "TASK_STATE_"), enumName(o.GetDesiredState().String(), "TASK_STATE_"), hasOld)
		if e := o.GetStatus().GetErr(); e != "" && (!hasOld || e != old.GetStatus().GetErr()) {
			attr["error"] = truncate(e, 256)
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
