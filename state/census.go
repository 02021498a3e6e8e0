package state

import swarmpb "github.com/raftswarm/raftswarm/proto"

// Census is what the store holds, counted for metrics.
type Census struct {
	Index uint64
	// Objects counts objects per kind: cluster, node, service, task,
	// secret, network, config.
	Objects map[string]int
}

// Census counts the store's objects under one read lock and hands every
// node and task to the visitors (either may be nil), in no order: unlike
// the List methods it neither copies nor sorts, so a scrape holds the lock
// for one pass over the maps. Visitors must be quick, must not call back
// into the Store and must not keep or modify the objects.
func (s *Store) Census(node func(*swarmpb.Node), task func(*swarmpb.Task)) Census {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d := s.d
	c := Census{Index: s.index, Objects: map[string]int{
		"cluster": len(d.clusters), "node": len(d.nodes), "service": len(d.services),
		"task": len(d.tasks), "secret": len(d.secrets), "network": len(d.networks), "config": len(d.configs),
	}}
	if node != nil {
		for _, n := range d.nodes {
			node(n)
		}
	}
	if task != nil {
		for _, t := range d.tasks {
			task(t)
		}
	}
	return c
}
