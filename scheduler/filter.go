package scheduler

import (
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// taskGroup is what the filters and the ranking need to know about a set of
// tasks sharing one service and spec version. It is derived once per group.
type taskGroup struct {
	serviceID   string
	constraints []Constraint
	err         error // invalid constraint: nothing can be placed
	cpu, mem    int64 // reservations
	ports       []hostPort
	maxPerNode  uint64
	spread      []spreadKey
}

type hostPort struct {
	proto string
	port  uint32
}

type spreadKey struct {
	kind  attrKind
	label string
}

func newTaskGroup(t *swarmpb.Task) *taskGroup {
	g := &taskGroup{serviceID: t.GetServiceId()}
	spec := t.GetSpec()
	g.constraints, g.err = ParseConstraints(spec.GetPlacement().GetConstraints())
	res := spec.GetResources().GetReservations()
	g.cpu, g.mem = max(res.GetNanoCpus(), 0), max(res.GetMemoryBytes(), 0)
	g.ports = hostPorts(spec)
	g.maxPerNode = spec.GetPlacement().GetMaxReplicasPerNode()
	for _, d := range spec.GetPlacement().GetSpreadDescriptors() {
		kind, label, _, reason := parseKey(d)
		if reason != "" {
			continue // unknown descriptors do not spread anything
		}
		g.spread = append(g.spread, spreadKey{kind, label})
	}
	return g
}

// hostPorts lists the host-mode published ports of a spec, deduplicated.
func hostPorts(spec *swarmpb.ServiceSpec) []hostPort {
	var out []hostPort
	for _, p := range spec.GetPorts() {
		if p.GetPublishedPort() == 0 || !equalFoldASCII(p.GetPublishMode(), "host") {
			continue
		}
		hp := hostPort{proto: lowerProto(p.GetProtocol()), port: p.GetPublishedPort()}
		dup := false
		for _, o := range out {
			dup = dup || o == hp
		}
		if !dup {
			out = append(out, hp)
		}
	}
	return out
}

func lowerProto(p string) string {
	switch {
	case p == "", equalFoldASCII(p, "tcp"):
		return "tcp"
	case equalFoldASCII(p, "udp"):
		return "udp"
	case equalFoldASCII(p, "sctp"):
		return "sctp"
	}
	return p
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

// filter is one placement predicate, SwarmKit-style: Check decides for one
// (group, node) pair and Explain summarises the nodes it rejected.
type filter interface {
	Name() string
	Check(g *taskGroup, n *nodeInfo) bool
	Explain(nFailed int) string
}

func nodes(n int) string {
	if n == 1 {
		return "1 node"
	}
	return fmt.Sprintf("%d nodes", n)
}

type readyFilter struct{}

func (readyFilter) Name() string { return "ready" }
func (readyFilter) Check(_ *taskGroup, n *nodeInfo) bool {
	return n.node.GetStatus() == swarmpb.NodeStatus_NODE_STATUS_READY &&
		n.node.GetDescription().GetEngineError() == ""
}
func (readyFilter) Explain(k int) string { return nodes(k) + " not ready" }

type availabilityFilter struct{}

func (availabilityFilter) Name() string { return "availability" }
func (availabilityFilter) Check(_ *taskGroup, n *nodeInfo) bool {
	return n.node.GetSpec().GetAvailability() == swarmpb.NodeAvailability_NODE_AVAILABILITY_ACTIVE
}
func (availabilityFilter) Explain(k int) string { return nodes(k) + " not available for new tasks" }

type constraintFilter struct{}

func (constraintFilter) Name() string { return "constraints" }
func (constraintFilter) Check(g *taskGroup, n *nodeInfo) bool {
	for i := range g.constraints {
		if !g.constraints[i].Match(n.node) {
			return false
		}
	}
	return true
}
func (constraintFilter) Explain(k int) string {
	return "scheduling constraints not satisfied on " + nodes(k)
}

type resourceFilter struct{}

func (resourceFilter) Name() string { return "resources" }
func (resourceFilter) Check(g *taskGroup, n *nodeInfo) bool {
	if g.cpu > 0 && g.cpu > n.cpu-n.resCPU {
		return false
	}
	if g.mem > 0 && g.mem > n.mem-n.resMem {
		return false
	}
	return true
}
func (resourceFilter) Explain(k int) string { return "insufficient resources on " + nodes(k) }

type maxReplicasFilter struct{}

func (maxReplicasFilter) Name() string { return "max-replicas" }
func (maxReplicasFilter) Check(g *taskGroup, n *nodeInfo) bool {
	return g.maxPerNode == 0 || uint64(n.perService[g.serviceID]) < g.maxPerNode
}
func (maxReplicasFilter) Explain(int) string { return "max replicas per node limit exceed" }

type hostPortFilter struct{}

func (hostPortFilter) Name() string { return "host-ports" }
func (hostPortFilter) Check(g *taskGroup, n *nodeInfo) bool {
	for _, p := range g.ports {
		if n.ports[p] > 0 {
			return false
		}
	}
	return true
}
func (hostPortFilter) Explain(k int) string {
	return "host-mode port already in use on " + nodes(k)
}

// filters in evaluation order; a rejected node is blamed on the first filter
// that rejects it. The filters from firstDynamic on depend on what has been
// placed on the node, so they are re-checked after every placement.
var filters = []filter{
	readyFilter{},
	availabilityFilter{},
	constraintFilter{},
	resourceFilter{},
	maxReplicasFilter{},
	hostPortFilter{},
}

const firstDynamic = 3

// firstFailing returns the index of the first filter from `from` on that
// rejects n, or -1.
func firstFailing(g *taskGroup, n *nodeInfo, from int) int {
	for i := from; i < len(filters); i++ {
		if !filters[i].Check(g, n) {
			return i
		}
	}
	return -1
}

// explain renders the user-facing reason from per-filter rejection counts.
func explain(failed []int) string {
	s := "no suitable node ("
	first := true
	for i, k := range failed {
		if k == 0 {
			continue
		}
		if !first {
			s += "; "
		}
		first = false
		s += filters[i].Explain(k)
	}
	return s + ")"
}
