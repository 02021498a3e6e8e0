package orchestrator

import (
	"slices"
	"strings"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
)

// view is what one reconciliation reads, copied out of the store in one
// short View. Stored objects are immutable, so copying pointers is enough;
// planning then runs without the store's lock, which would otherwise hold
// up every Raft apply (and with it service rm and scale) for as long as a
// large service takes to plan. A write that lands meanwhile is caught by
// the versions the plan's updates carry.
type view struct {
	history  int
	nodes    map[string]*swarmpb.Node
	nodeList []*swarmpb.Node // by ID
	services map[string]*swarmpb.Service
	tasks    map[string][]*swarmpb.Task // service ID -> its tasks, unordered
	// items are the IDs to reconcile, services and removed services that
	// still have tasks, in ID order.
	items []string
	// portOwner holds, for the ports a rollback would claim, the service
	// publishing them now.
	portOwner map[state.PortKey]*swarmpb.Service
}

// readView copies what reconciling dirty (nil: everything) needs.
func readView(st *state.Store, dirty map[string]bool) *view {
	v := &view{nodes: map[string]*swarmpb.Node{}, services: map[string]*swarmpb.Service{},
		tasks: map[string][]*swarmpb.Task{}, portOwner: map[state.PortKey]*swarmpb.Service{}}
	st.View(func(tx state.ReadTx) {
		v.history = int(tx.Cluster().GetSettings().GetTaskHistoryLimit())
		v.nodeList = tx.ListNodes()
		for _, n := range v.nodeList {
			v.nodes[n.Id] = n
		}
		add := func(id string) {
			if svc := tx.GetService(id); svc != nil {
				v.services[id] = svc
				for _, p := range svc.GetPreviousSpec().GetPorts() {
					k := state.PortKey{Port: p.GetPublishedPort(), Protocol: p.GetProtocol()}
					if o := tx.PortOwner(k); p.GetPublishedPort() != 0 && o != nil {
						v.portOwner[k] = o
					}
				}
			}
			ts := tx.TasksByServiceUnordered(id)
			if ts != nil {
				v.tasks[id] = ts
			}
			if ts != nil || v.services[id] != nil {
				v.items = append(v.items, id)
			}
		}
		if dirty == nil {
			for _, s := range tx.ListServices() {
				add(s.Id)
			}
			for _, id := range tx.TaskServiceIDs() {
				if tx.GetService(id) == nil {
					add(id)
				}
			}
		} else {
			for id := range dirty {
				add(id)
			}
		}
	})
	if v.history <= 0 {
		v.history = 5
	}
	slices.Sort(v.items)
	return v
}

// portTaken returns a port that spec publishes and another service owns,
// with its owner.
func (v *view) portTaken(id string, spec *swarmpb.ServiceSpec) (state.PortKey, *swarmpb.Service) {
	for _, p := range spec.GetPorts() {
		k := state.PortKey{Port: p.GetPublishedPort(), Protocol: p.GetProtocol()}
		if o := v.portOwner[k]; o != nil && o.Id != id {
			return k, o
		}
	}
	return state.PortKey{}, nil
}

// usableNodes fills m (cleared; made if nil) with the nodes that are up
// and not drained.
func (v *view) usableNodes(m map[string]bool) map[string]bool {
	if m == nil {
		m = make(map[string]bool, len(v.nodeList))
	}
	clear(m)
	for _, n := range v.nodeList {
		if usableNode(n) {
			m[n.Id] = true
		}
	}
	return m
}

// usableNode reports a node that is up and not drained: the orchestrator
// keeps tasks there.
func usableNode(n *swarmpb.Node) bool {
	return nodeUp(n) && n.GetSpec().GetAvailability() != swarmpb.NodeAvailability_NODE_AVAILABILITY_DRAIN
}

func (v *view) GetNode(id string) *swarmpb.Node          { return v.nodes[id] }
func (v *view) ListNodes() []*swarmpb.Node               { return v.nodeList }
func (v *view) GetService(id string) *swarmpb.Service    { return v.services[id] }
func (v *view) TasksByService(id string) []*swarmpb.Task { return v.tasks[id] }

// rotate returns items starting after the one named resume, so that a
// service that used up a pass's budget goes last in the next pass and
// cannot starve the others.
func rotate(items []string, resume string) []string {
	if resume == "" {
		return items
	}
	i, _ := slices.BinarySearchFunc(items, resume, strings.Compare)
	if i < len(items) && items[i] == resume {
		i++
	}
	return append(slices.Clone(items[i:]), items[:i]...)
}
