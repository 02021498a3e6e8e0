package api

import (
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// The service-discovery part of the Endpoints stream (design:
// docs/discovery.md). The leader builds one cluster-wide discovery table
// with the routing-mesh table, on the same store changes; each node's
// stream sends the part of it that concerns that node:
//
//   - the networks the node has tasks on: assigned to it and not yet
//     terminal (a task draining before it stops still has its container on
//     the network, so the network stays until the task has stopped);
//   - the services attached to those networks, with their VIPs and aliases
//     on those networks only, and their serving tasks (RUNNING, healthy
//     when checked, desired running: a task about to stop leaves first);
//   - the data address of every node those tasks run on: the node's
//     address as the managers observed it, with the data port it reports;
//     a node reporting none (0) is left out.
//
// A node never learns of networks it has no task on, nor of services only
// on such networks.

// discovery is the cluster-wide table.
type discovery struct {
	networks map[string]*swarmpb.NetworkView        // network ID -> view
	services []*swarmpb.DiscoveryService            // services on at least one network, by ID
	nodes    map[string]string                      // node ID -> data address
	nodeNets map[string]map[string]struct{}         // node ID -> networks it has tasks on
	byNet    map[string][]*swarmpb.DiscoveryService // network ID -> services attached
}

func buildDiscovery(tx state.ReadTx) *discovery {
	d := &discovery{
		networks: map[string]*swarmpb.NetworkView{},
		nodes:    map[string]string{},
		nodeNets: map[string]map[string]struct{}{},
		byNet:    map[string][]*swarmpb.DiscoveryService{},
	}
	nets := tx.ListNetworks()
	if len(nets) == 0 {
		return d
	}
	for _, n := range nets {
		d.networks[n.Id] = &swarmpb.NetworkView{Id: n.Id, Name: n.GetSpec().GetName(), Subnet: n.GetSubnet(), Internal: n.GetSpec().GetInternal()}
	}
	for _, svc := range tx.ListServices() { // in ID order
		var atts []*swarmpb.DiscoveryAttachment
		for _, a := range svc.GetSpec().GetNetworks() {
			if d.networks[a.GetTarget()] == nil {
				continue
			}
			atts = append(atts, &swarmpb.DiscoveryAttachment{NetworkId: a.GetTarget(), Vip: vipOn(svc, a.GetTarget()), Aliases: a.GetAliases()})
		}
		if len(svc.GetSpec().GetNetworks()) == 0 && len(svc.GetPreviousSpec().GetNetworks()) == 0 {
			// Neither its tasks nor those of its previous spec (still
			// draining during an update) are on a network.
			continue
		}
		tasks := tx.TasksByServiceUnordered(svc.Id)
		sort.Slice(tasks, func(i, j int) bool { return tasks[i].Id < tasks[j].Id })
		for _, t := range tasks {
			d.noteNodeNets(t, svc)
		}
		if len(atts) == 0 {
			continue
		}
		ds := &swarmpb.DiscoveryService{ServiceId: svc.Id, Name: svc.GetSpec().GetName(), Networks: atts}
		for _, t := range tasks { // in ID order
			if serving(t) && t.NodeId != "" {
				ds.Tasks = append(ds.Tasks, &swarmpb.DiscoveryTask{TaskId: t.Id, NodeId: t.NodeId, Slot: t.Slot})
				if _, ok := d.nodes[t.NodeId]; !ok {
					d.nodes[t.NodeId] = dataAddr(tx.GetNode(t.NodeId))
				}
			}
		}
		d.services = append(d.services, ds)
		for _, a := range atts {
			d.byNet[a.NetworkId] = append(d.byNet[a.NetworkId], ds)
		}
	}
	for _, node := range slices.Sorted(maps.Keys(d.nodeNets)) {
		for id := range d.nodeNets[node] {
			d.networks[id].NodeIds = append(d.networks[id].NodeIds, node)
		}
	}
	return d
}

// noteNodeNets records the networks task t's node has it on: those of the
// spec the task runs (during an update, old tasks may still be on a
// network the service left).
func (d *discovery) noteNodeNets(t *swarmpb.Task, svc *swarmpb.Service) {
	if t.NodeId == "" || t.GetStatus().GetState() >= swarmpb.TaskState_TASK_STATE_COMPLETE {
		return
	}
	sp := t.GetSpec()
	if sp == nil {
		sp = svc.GetSpec()
	}
	for _, a := range sp.GetNetworks() {
		if d.networks[a.GetTarget()] == nil {
			continue
		}
		m := d.nodeNets[t.NodeId]
		if m == nil {
			m = map[string]struct{}{}
			d.nodeNets[t.NodeId] = m
		}
		m[a.GetTarget()] = struct{}{}
	}
}

// dataAddr is where a node's data-path listener is reachable: the address
// the managers recorded for it, with the port it reports; "" when it
// reports none.
func dataAddr(n *swarmpb.Node) string {
	port := n.GetDescription().GetDataPort()
	if port == 0 || port > 65535 {
		return ""
	}
	host, _, err := net.SplitHostPort(n.GetAddr())
	if err != nil || host == "" {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// forNode fills m with the part of the table that concerns node nodeID.
func (d *discovery) forNode(nodeID string, m *swarmpb.EndpointsMessage) {
	if d == nil {
		return
	}
	nets := slices.Sorted(maps.Keys(d.nodeNets[nodeID]))
	if len(nets) == 0 {
		return
	}
	on := map[string]bool{}
	for _, id := range nets {
		on[id] = true
		m.Networks = append(m.Networks, d.networks[id])
	}
	seen := map[string]bool{}
	var svcs []*swarmpb.DiscoveryService
	for _, id := range nets {
		for _, ds := range d.byNet[id] {
			if !seen[ds.ServiceId] {
				seen[ds.ServiceId] = true
				svcs = append(svcs, ds)
			}
		}
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].ServiceId < svcs[j].ServiceId })
	nodes := map[string]bool{}
	for _, ds := range svcs {
		out := ds
		if len(ds.Networks) > 1 {
			// Only the attachments on this node's networks.
			out = &swarmpb.DiscoveryService{ServiceId: ds.ServiceId, Name: ds.Name, Tasks: ds.Tasks}
			for _, a := range ds.Networks {
				if on[a.NetworkId] {
					out.Networks = append(out.Networks, a)
				}
			}
		}
		m.Services = append(m.Services, out)
		for _, t := range ds.Tasks {
			nodes[t.NodeId] = true
		}
	}
	for _, id := range slices.Sorted(maps.Keys(nodes)) {
		if addr := d.nodes[id]; addr != "" {
			m.Nodes = append(m.Nodes, &swarmpb.NodeDataAddr{NodeId: id, Addr: addr})
		}
	}
}

// equal reports whether two tables would give every node the same view.
func (d *discovery) equal(o *discovery) bool {
	if d == nil || o == nil {
		return d == o
	}
	if !maps.EqualFunc(d.networks, o.networks, func(a, b *swarmpb.NetworkView) bool { return proto.Equal(a, b) }) ||
		!maps.Equal(d.nodes, o.nodes) ||
		!maps.EqualFunc(d.nodeNets, o.nodeNets, func(a, b map[string]struct{}) bool { return maps.Equal(a, b) }) ||
		len(d.services) != len(o.services) {
		return false
	}
	for i := range d.services {
		if !proto.Equal(d.services[i], o.services[i]) {
			return false
		}
	}
	return true
}

// affectsDiscovery filters the events that can change the discovery
// table beyond what affectsEndpoints already lets through.
func affectsDiscovery(ev state.Event) bool {
	switch {
	case ev.Network() != nil:
		return true
	case ev.Task() != nil:
		old, _ := ev.Old.(*swarmpb.Task)
		t := ev.Task()
		return old == nil || ev.Kind == state.EventDelete || old.NodeId != t.NodeId ||
			(old.GetStatus().GetState() >= swarmpb.TaskState_TASK_STATE_COMPLETE) != (t.GetStatus().GetState() >= swarmpb.TaskState_TASK_STATE_COMPLETE)
	case ev.Node() != nil:
		old, _ := ev.Old.(*swarmpb.Node)
		return old == nil || ev.Kind == state.EventDelete || old.GetDescription().GetDataPort() != ev.Node().GetDescription().GetDataPort()
	}
	return false
}
