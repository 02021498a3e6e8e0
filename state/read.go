package state

import (
	"cmp"
	"slices"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// ReadTx is a consistent read-only view, valid only inside the function it
// was passed to. The objects it returns stay valid (and unchanged) forever,
// but must not be modified: proto.Clone before changing. Lists are sorted by
// id.
type ReadTx interface {
	Index() uint64
	Cluster() *swarmpb.Cluster // the cluster with the smallest id, nil if none
	GetCluster(id string) *swarmpb.Cluster
	ListClusters() []*swarmpb.Cluster
	GetNode(id string) *swarmpb.Node
	ListNodes() []*swarmpb.Node
	NodeCount() int // O(1), for hot paths such as heartbeats
	GetService(id string) *swarmpb.Service
	GetServiceByName(name string) *swarmpb.Service
	ListServices() []*swarmpb.Service
	GetTask(id string) *swarmpb.Task
	ListTasks() []*swarmpb.Task
	TasksByService(serviceID string) []*swarmpb.Task
	TasksByNode(nodeID string) []*swarmpb.Task // "" lists unassigned tasks
	GetSecret(id string) *swarmpb.Secret
	ListSecrets() []*swarmpb.Secret
	GetSecretByName(name string) *swarmpb.Secret
	GetNetwork(id string) *swarmpb.Network
	ListNetworks() []*swarmpb.Network
	GetNetworkByName(name string) *swarmpb.Network
	GetConfig(id string) *swarmpb.Config
	ListConfigs() []*swarmpb.Config
	GetConfigByName(name string) *swarmpb.Config

	// For readers that must hold the lock briefly (see reads.go).
	TasksByServiceUnordered(serviceID string) []*swarmpb.Task
	TaskServiceIDs() []string // services (removed ones included) that have tasks
	PortOwner(k PortKey) *swarmpb.Service
	NodesPage(after string, limit int) []*swarmpb.Node
	ServicesPage(after string, limit int) []*swarmpb.Service
	TasksPage(q TaskQuery, after string, limit int) []*swarmpb.Task
}

// View runs fn under the read lock. fn must not call back into the Store's
// locking methods (View, ApplyBatch, Index, ...): a nested read lock
// deadlocks once a writer is queued.
func (s *Store) View(fn func(tx ReadTx)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(readTx{d: s.d, index: s.index})
}

type readTx struct {
	d     *data
	index uint64
}

func (r readTx) Index() uint64 { return r.index }

func (r readTx) Cluster() *swarmpb.Cluster {
	var first *swarmpb.Cluster
	for id, c := range r.d.clusters {
		if first == nil || id < first.GetId() {
			first = c
		}
	}
	return first
}

func (r readTx) GetCluster(id string) *swarmpb.Cluster { return r.d.clusters[id] }
func (r readTx) ListClusters() []*swarmpb.Cluster      { return sortedValues(r.d.clusters) }
func (r readTx) GetNode(id string) *swarmpb.Node       { return r.d.nodes[id] }
func (r readTx) ListNodes() []*swarmpb.Node            { return sortedValues(r.d.nodes) }
func (r readTx) NodeCount() int                        { return len(r.d.nodes) }
func (r readTx) GetService(id string) *swarmpb.Service { return r.d.services[id] }
func (r readTx) ListServices() []*swarmpb.Service      { return sortedValues(r.d.services) }
func (r readTx) GetTask(id string) *swarmpb.Task       { return r.d.tasks[id] }
func (r readTx) ListTasks() []*swarmpb.Task            { return sortedValues(r.d.tasks) }
func (r readTx) GetSecret(id string) *swarmpb.Secret   { return r.d.secrets[id] }
func (r readTx) ListSecrets() []*swarmpb.Secret        { return sortedValues(r.d.secrets) }
func (r readTx) GetNetwork(id string) *swarmpb.Network { return r.d.networks[id] }
func (r readTx) ListNetworks() []*swarmpb.Network      { return sortedValues(r.d.networks) }
func (r readTx) GetConfig(id string) *swarmpb.Config   { return r.d.configs[id] }
func (r readTx) ListConfigs() []*swarmpb.Config        { return sortedValues(r.d.configs) }

func (r readTx) GetNetworkByName(name string) *swarmpb.Network {
	return r.d.networks[r.d.objectByName[kindNetwork][name]]
}
func (r readTx) GetSecretByName(name string) *swarmpb.Secret {
	return r.d.secrets[r.d.objectByName[kindSecret][name]]
}
func (r readTx) GetConfigByName(name string) *swarmpb.Config {
	return r.d.configs[r.d.objectByName[kindConfig][name]]
}

func (r readTx) TasksByService(id string) []*swarmpb.Task { return r.tasksIn(r.d.tasksByService[id]) }
func (r readTx) TasksByNode(id string) []*swarmpb.Task    { return r.tasksIn(r.d.tasksByNode[id]) }

func (r readTx) GetServiceByName(name string) *swarmpb.Service {
	if name == "" {
		return nil
	}
	id, ok := r.d.serviceByName[name]
	if !ok {
		return nil
	}
	return r.d.services[id]
}

func (r readTx) tasksIn(set taskSet) []*swarmpb.Task {
	if len(set) == 0 {
		return nil
	}
	out := make([]*swarmpb.Task, 0, len(set))
	for _, t := range set {
		out = append(out, t)
	}
	sortByID(out)
	return out
}

func sortedValues[T object](m map[string]T) []T {
	if len(m) == 0 {
		return nil
	}
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sortByID(out)
	return out
}

func sortByID[T object](s []T) {
	slices.SortFunc(s, func(a, b T) int { return cmp.Compare(a.GetId(), b.GetId()) })
}
