package state

import swarmpb "github.com/raftswarm/raftswarm/proto"

// data is the whole state. Restore builds a fresh one and swaps the pointer,
// so a failed restore leaves the old state untouched.
type data struct {
	clusters map[string]*swarmpb.Cluster
	nodes    map[string]*swarmpb.Node
	services map[string]*swarmpb.Service
	tasks    map[string]*swarmpb.Task
	secrets  map[string]*swarmpb.Secret
	networks map[string]*swarmpb.Network
	configs  map[string]*swarmpb.Config

	serviceByName  map[string]string  // unique non-empty service name -> id
	tasksByService map[string]taskSet // service id -> its tasks
	tasksByNode    map[string]taskSet // node id ("" = unassigned) -> its tasks
	portOwner      map[PortKey]string // published port/protocol -> service id
	vipOwner       map[VIPKey]string  // virtual IP on a network -> service id
	// Unique names of networks, secrets and configs: kind -> name -> id.
	objectByName map[nameKind]map[string]string
}

// nameKind is a kind of object whose names the store keeps unique (besides
// services, which have their own index).
type nameKind string

const (
	kindNetwork nameKind = "network"
	kindSecret  nameKind = "secret"
	kindConfig  nameKind = "config"
)

func (d *data) indexName(k nameKind, name, id string) {
	if name == "" {
		return
	}
	m := d.objectByName[k]
	if m == nil {
		m = make(map[string]string)
		d.objectByName[k] = m
	}
	m[name] = id
}

func (d *data) unindexName(k nameKind, name, id string) {
	if m := d.objectByName[k]; m != nil && name != "" && m[name] == id {
		delete(m, name)
	}
}

func (d *data) indexNetwork(n *swarmpb.Network) {
	d.indexName(kindNetwork, n.GetSpec().GetName(), n.GetId())
}
func (d *data) unindexNetwork(n *swarmpb.Network) {
	d.unindexName(kindNetwork, n.GetSpec().GetName(), n.GetId())
}
func (d *data) indexSecret(s *swarmpb.Secret)   { d.indexName(kindSecret, s.GetName(), s.GetId()) }
func (d *data) unindexSecret(s *swarmpb.Secret) { d.unindexName(kindSecret, s.GetName(), s.GetId()) }
func (d *data) indexConfig(c *swarmpb.Config)   { d.indexName(kindConfig, c.GetName(), c.GetId()) }
func (d *data) unindexConfig(c *swarmpb.Config) { d.unindexName(kindConfig, c.GetName(), c.GetId()) }

// taskSet holds tasks by ID: the stored object itself, so that reading a
// service's tasks (every orchestrator pass, at 100,000 tasks) costs no
// second lookup in the tasks map. Kept in step by indexTask/unindexTask,
// which every commit calls for each stored version in turn.
type taskSet map[string]*swarmpb.Task

func newData() *data {
	return &data{
		clusters:       make(map[string]*swarmpb.Cluster),
		nodes:          make(map[string]*swarmpb.Node),
		services:       make(map[string]*swarmpb.Service),
		tasks:          make(map[string]*swarmpb.Task),
		secrets:        make(map[string]*swarmpb.Secret),
		networks:       make(map[string]*swarmpb.Network),
		configs:        make(map[string]*swarmpb.Config),
		objectByName:   make(map[nameKind]map[string]string),
		serviceByName:  make(map[string]string),
		tasksByService: make(map[string]taskSet),
		tasksByNode:    make(map[string]taskSet),
		portOwner:      make(map[PortKey]string),
		vipOwner:       make(map[VIPKey]string),
	}
}

func (d *data) indexService(s *swarmpb.Service) {
	if name := s.GetSpec().GetName(); name != "" {
		d.serviceByName[name] = s.GetId()
	}
	d.indexPorts(s)
	d.indexVIPs(s)
}

// unindexService only drops the name if it still points at this service: in
// a batch that frees a name and gives it to another service, commit order is
// map order, and the new owner may already have been indexed.
func (d *data) unindexService(s *swarmpb.Service) {
	name := s.GetSpec().GetName()
	if name != "" && d.serviceByName[name] == s.GetId() {
		delete(d.serviceByName, name)
	}
	d.unindexPorts(s)
	d.unindexVIPs(s)
}

func (d *data) indexTask(t *swarmpb.Task) {
	setAdd(d.tasksByService, t.GetServiceId(), t)
	setAdd(d.tasksByNode, t.GetNodeId(), t)
}

func (d *data) unindexTask(t *swarmpb.Task) {
	setRemove(d.tasksByService, t.GetServiceId(), t.GetId())
	setRemove(d.tasksByNode, t.GetNodeId(), t.GetId())
}

func setAdd(m map[string]taskSet, key string, t *swarmpb.Task) {
	s := m[key]
	if s == nil {
		s = make(taskSet)
		m[key] = s
	}
	s[t.GetId()] = t
}

// setRemove drops empty sets so that churn over many services and nodes does
// not leave the index growing forever.
func setRemove(m map[string]taskSet, key, id string) {
	s := m[key]
	if s == nil {
		return
	}
	delete(s, id)
	if len(s) == 0 {
		delete(m, key)
	}
}
