package netplane

import (
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Backend is one task a connection can be proxied to.
type Backend struct {
	TaskID string
	NodeID string
	// Local is the task container's address on this node's bridge for the
	// target's network; valid only for tasks on this node.
	Local netip.Addr
	// DataAddr is the tunnel address (host:port) of the task's node, for
	// tasks on other nodes.
	DataAddr string
}

// IsLocal reports whether the backend runs on this node.
func (b Backend) IsLocal() bool { return b.Local.IsValid() }

// Target is what a virtual address stands for: a service (its VIP, balanced
// over its running tasks) or one task on another node (a node-local task
// address, answered for tasks.NAME).
type Target struct {
	Service   bool // a service VIP; false: one task's address
	ServiceID string
	Name      string // the service name
	NetworkID string
	Backends  []Backend
}

// Table is the name table of one discovery view on one node: names and
// virtual addresses per network, and the node's own task containers. It is
// immutable once built; a new view builds a new Table. Names are matched
// case-insensitively, without a trailing dot.
type Table struct {
	nets map[string]*netTable
	// local maps a container address on one of this node's bridges to its
	// task and network.
	local map[netip.Addr]localEndpoint
	// taskNets lists, per local task, the networks it is attached to here.
	taskNets map[string][]string
}

type localEndpoint struct {
	TaskID, NetworkID string
}

type netTable struct {
	id, name string
	subnet   netip.Prefix
	internal bool
	names    map[string]netip.Addr   // service name or alias -> VIP
	tasks    map[string][]netip.Addr // service name -> task addresses
	targets  map[netip.Addr]*Target  // virtual address -> target
	peers    map[string]bool         // nodes with a task assigned (view.node_ids) or running on the network
	local    map[string]netip.Addr   // local task ID -> container address
}

// TableInput is what a Table is built from.
type TableInput struct {
	View   *swarmpb.EndpointsMessage
	NodeID string // this node
	// Local lists, per network ID, this node's task containers attached to
	// the network's bridge: task ID -> container address.
	Local map[string]map[string]netip.Addr
}

// normName is the form names are stored and looked up in.
func normName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// BuildTable builds the Table of a view. alloc keeps the node-local task
// addresses of remote tasks across views (stable while a task stays in the
// view, freed once it leaves); it may be nil in tests that do not care.
// Entries of the view that do not parse (a VIP outside its network's subnet,
// a bad data address) are skipped: the view comes from the leader, but a
// table must never point outside the network.
func BuildTable(in TableInput, alloc *TaskAddrs) *Table {
	if alloc == nil {
		alloc = NewTaskAddrs()
	}
	t := &Table{
		nets:     map[string]*netTable{},
		local:    map[netip.Addr]localEndpoint{},
		taskNets: map[string][]string{},
	}
	view := in.View
	for _, n := range view.GetNetworks() {
		subnet, err := netip.ParsePrefix(n.GetSubnet())
		if err != nil || !subnet.Addr().Is4() || n.GetId() == "" {
			continue
		}
		t.nets[n.GetId()] = &netTable{
			id: n.GetId(), name: n.GetName(), subnet: subnet.Masked(), internal: n.GetInternal(),
			names:   map[string]netip.Addr{},
			tasks:   map[string][]netip.Addr{},
			targets: map[netip.Addr]*Target{},
			peers:   map[string]bool{},
			local:   map[string]netip.Addr{},
		}
		for _, id := range n.GetNodeIds() {
			t.nets[n.GetId()].peers[id] = true
		}
	}
	for netID, eps := range in.Local {
		nt := t.nets[netID]
		for taskID, ip := range eps {
			if !ip.Is4() {
				continue
			}
			t.local[ip] = localEndpoint{TaskID: taskID, NetworkID: netID}
			t.taskNets[taskID] = append(t.taskNets[taskID], netID)
			if nt != nil {
				nt.local[taskID] = ip
			}
		}
	}
	for _, nets := range t.taskNets {
		sort.Strings(nets)
	}
	dataAddrs := map[string]string{}
	for _, n := range view.GetNodes() {
		if _, _, err := net.SplitHostPort(n.GetAddr()); err == nil {
			dataAddrs[n.GetNodeId()] = n.GetAddr()
		}
	}

	// Deterministic order: services by ID, so that a clash between names
	// (which the API refuses) still resolves the same way on every node.
	services := slices.Clone(view.GetServices())
	sort.Slice(services, func(i, j int) bool { return services[i].GetServiceId() < services[j].GetServiceId() })

	keep := map[string]map[string]bool{} // network -> remote tasks still in the view
	for _, s := range services {
		for _, att := range s.GetNetworks() {
			nt := t.nets[att.GetNetworkId()]
			if nt == nil {
				continue
			}
			var backends []Backend
			var taskAddrs []netip.Addr
			for _, task := range s.GetTasks() {
				nt.peers[task.GetNodeId()] = true
				if task.GetNodeId() == in.NodeID {
					ip, ok := nt.local[task.GetTaskId()]
					if !ok {
						continue // its container is not on the bridge (yet)
					}
					backends = append(backends, Backend{TaskID: task.GetTaskId(), NodeID: in.NodeID, Local: ip})
					taskAddrs = append(taskAddrs, ip)
					continue
				}
				da, ok := dataAddrs[task.GetNodeId()]
				if !ok {
					continue // its node serves no tunnel: unreachable from here
				}
				b := Backend{TaskID: task.GetTaskId(), NodeID: task.GetNodeId(), DataAddr: da}
				backends = append(backends, b)
				if keep[nt.id] == nil {
					keep[nt.id] = map[string]bool{}
				}
				keep[nt.id][task.GetTaskId()] = true
				if addr, ok := alloc.get(nt.id, nt.subnet, task.GetTaskId()); ok {
					if _, taken := nt.targets[addr]; !taken {
						taskAddrs = append(taskAddrs, addr)
						nt.targets[addr] = &Target{ServiceID: s.GetServiceId(), Name: s.GetName(), NetworkID: nt.id, Backends: []Backend{b}}
					}
				}
			}
			name := normName(s.GetName())
			if name != "" {
				if _, dup := nt.tasks[name]; !dup {
					nt.tasks[name] = taskAddrs
				}
			}
			vip, err := netip.ParseAddr(att.GetVip())
			if err != nil || !nt.subnet.Contains(vip) || !inLowerHalf(nt.subnet, vip) {
				continue
			}
			if _, taken := nt.targets[vip]; taken {
				continue
			}
			nt.targets[vip] = &Target{Service: true, ServiceID: s.GetServiceId(), Name: s.GetName(), NetworkID: nt.id, Backends: backends}
			if name != "" {
				if _, dup := nt.names[name]; !dup {
					nt.names[name] = vip
				}
			}
		}
	}
	// Aliases after every service name, so an alias never hides a service.
	for _, s := range services {
		for _, att := range s.GetNetworks() {
			nt := t.nets[att.GetNetworkId()]
			if nt == nil {
				continue
			}
			vip, ok := nt.names[normName(s.GetName())]
			if !ok || nt.targets[vip].ServiceID != s.GetServiceId() {
				continue
			}
			for _, a := range att.GetAliases() {
				a = normName(a)
				if _, dup := nt.names[a]; a != "" && !dup {
					nt.names[a] = vip
				}
				// tasks.ALIAS too, as Docker does.
				if _, dup := nt.tasks[a]; a != "" && !dup {
					nt.tasks[a] = nt.tasks[normName(s.GetName())]
				}
			}
		}
	}
	alloc.retain(keep, t.nets)
	return t
}

// inLowerHalf reports whether addr is in the lower half of p, where the
// managers allocate VIPs.
func inLowerHalf(p netip.Prefix, addr netip.Addr) bool {
	if p.Bits() >= 32 {
		return false
	}
	half, err := p.Addr().Prefix(p.Bits() + 1)
	return err == nil && half.Contains(addr)
}

// Networks lists the IDs of the networks in the table, sorted.
func (t *Table) Networks() []string {
	ids := make([]string, 0, len(t.nets))
	for id := range t.nets {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Network returns a network's name, virtual-address subnet and whether it is
// internal.
func (t *Table) Network(id string) (name string, subnet netip.Prefix, internal, ok bool) {
	nt := t.nets[id]
	if nt == nil {
		return "", netip.Prefix{}, false, false
	}
	return nt.name, nt.subnet, nt.internal, true
}

// Known reports whether src is one of this node's task containers.
func (t *Table) Known(src netip.Addr) bool {
	_, ok := t.local[src.Unmap()]
	return ok
}

// NetworksOf returns the networks whose names a container at src, asking
// through the bridge of network bridgeNet, may see: every network its task
// is attached to on this node, bridgeNet first; for an unknown source, just
// bridgeNet.
func (t *Table) NetworksOf(src netip.Addr, bridgeNet string) []string {
	ep, ok := t.local[src.Unmap()]
	if !ok {
		return []string{bridgeNet}
	}
	nets := []string{}
	all := t.taskNets[ep.TaskID]
	if slices.Contains(all, bridgeNet) {
		nets = append(nets, bridgeNet)
	}
	for _, n := range all {
		if n != bridgeNet {
			nets = append(nets, n)
		}
	}
	return nets
}

// Resolve answers a name for a container that may see the networks nets
// (in order of preference): a service name or alias gives its VIP on the
// first of those networks that has it; tasks.NAME gives one address per
// running task. owned is false for names the table does not own, which
// belong to the host's resolvers.
func (t *Table) Resolve(name string, nets []string) (addrs []netip.Addr, owned bool) {
	name = normName(name)
	svc, isTasks := strings.CutPrefix(name, "tasks.")
	for _, id := range nets {
		nt := t.nets[id]
		if nt == nil {
			continue
		}
		if vip, ok := nt.names[name]; ok {
			return []netip.Addr{vip}, true
		}
		if isTasks {
			if as, ok := nt.tasks[svc]; ok {
				return slices.Clone(as), true
			}
		}
	}
	return nil, false
}

// Lookup returns the target of a virtual address for a container that may
// see the networks nets, or nil.
func (t *Table) Lookup(dst netip.Addr, nets []string) *Target {
	dst = dst.Unmap()
	for _, id := range nets {
		if nt := t.nets[id]; nt != nil {
			if tg := nt.targets[dst]; tg != nil {
				return tg
			}
		}
	}
	return nil
}

// Live lists a network's virtual addresses that have at least one backend,
// sorted: the kernel redirects these to the proxy and refuses the rest.
func (t *Table) Live(networkID string) []netip.Addr {
	nt := t.nets[networkID]
	if nt == nil {
		return nil
	}
	var live []netip.Addr
	for a, tg := range nt.targets {
		if len(tg.Backends) > 0 {
			live = append(live, a)
		}
	}
	slices.SortFunc(live, netip.Addr.Compare)
	return live
}

// CoNetworks lists the other networks that share a local task with
// networkID (a container attached to both), sorted. Such a container's
// packets to those networks' virtual addresses may enter through this
// network's bridge (its default route), so that bridge needs their rules
// too; the proxy still checks the container is on the target's network.
func (t *Table) CoNetworks(networkID string) []string {
	set := map[string]bool{}
	for _, nets := range t.taskNets {
		if !slices.Contains(nets, networkID) {
			continue
		}
		for _, n := range nets {
			if n != networkID && t.nets[n] != nil {
				set[n] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// LocalTask returns the container address of a task of this node attached
// to a network's bridge.
func (t *Table) LocalTask(networkID, taskID string) (netip.Addr, bool) {
	nt := t.nets[networkID]
	if nt == nil {
		return netip.Addr{}, false
	}
	ip, ok := nt.local[taskID]
	return ip, ok
}

// LocalTasks counts this node's task containers attached to a network.
func (t *Table) LocalTasks(networkID string) int {
	if nt := t.nets[networkID]; nt != nil {
		return len(nt.local)
	}
	return 0
}

// PeerOn reports whether the view names a running task of node nodeID on
// the network: only such nodes may reach the network's tasks here.
func (t *Table) PeerOn(networkID, nodeID string) bool {
	nt := t.nets[networkID]
	return nt != nil && nt.peers[nodeID]
}

// TaskAddrs allocates node-local addresses for other nodes' tasks, from the
// upper half of each network's subnet. An address stays with its task while
// the task stays in the view. Allocation goes round the range (next fit), so
// a freed address is reused as late as possible: a client that cached an old
// answer reaches nothing rather than another task. Not safe for concurrent
// use; the Plane's reconcile loop owns it.
type TaskAddrs struct {
	nets map[string]*netAddrs
}

type netAddrs struct {
	subnet netip.Prefix
	byTask map[string]netip.Addr
	used   map[netip.Addr]bool
	next   netip.Addr
}

// NewTaskAddrs makes an empty allocator.
func NewTaskAddrs() *TaskAddrs { return &TaskAddrs{nets: map[string]*netAddrs{}} }

// upperRange returns the first and last usable addresses of p's upper half
// (the broadcast address excluded).
func upperRange(p netip.Prefix) (first, last netip.Addr, ok bool) {
	if !p.Addr().Is4() || p.Bits() > 30 || p.Bits() < 1 {
		return first, last, false
	}
	base := p.Masked().Addr().As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	size := uint32(1) << (32 - p.Bits())
	return u32Addr(n + size/2), u32Addr(n + size - 2), true
}

func u32Addr(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// get returns the task's address, allocating one if needed; false when the
// upper half is full.
func (a *TaskAddrs) get(netID string, subnet netip.Prefix, taskID string) (netip.Addr, bool) {
	first, last, ok := upperRange(subnet)
	if !ok {
		return netip.Addr{}, false
	}
	na := a.nets[netID]
	if na == nil || na.subnet != subnet {
		na = &netAddrs{subnet: subnet, byTask: map[string]netip.Addr{}, used: map[netip.Addr]bool{}, next: first}
		a.nets[netID] = na
	}
	if addr, ok := na.byTask[taskID]; ok {
		return addr, true
	}
	addr := na.next
	for range 1 << (32 - subnet.Bits() - 1) {
		if addr.Compare(first) < 0 || addr.Compare(last) > 0 {
			addr = first
		}
		if !na.used[addr] {
			na.used[addr] = true
			na.byTask[taskID] = addr
			na.next = addr.Next()
			return addr, true
		}
		addr = addr.Next()
	}
	return netip.Addr{}, false
}

// retain frees every address whose task is not in keep (network -> tasks),
// and forgets networks no longer in the view.
func (a *TaskAddrs) retain(keep map[string]map[string]bool, nets map[string]*netTable) {
	for netID, na := range a.nets {
		for task, addr := range na.byTask {
			if !keep[netID][task] {
				delete(na.byTask, task)
				delete(na.used, addr)
			}
		}
		if nets[netID] == nil {
			delete(a.nets, netID)
		}
	}
}
