package state

import (
	"fmt"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// SnapshotVersion is the Snapshot.Version this package writes. Restore
// refuses any other, so that an old manager never silently half-loads a
// snapshot written by a newer one.
const SnapshotVersion = 1

// Snapshot returns the whole state. It shares the stored objects (which are
// never mutated), so it is cheap; callers must not modify them. Objects are
// sorted by id so that replicas produce identical snapshots.
func (s *Store) Snapshot() *swarmpb.Snapshot {
	snap, _ := s.SnapshotWithIndex()
	return snap
}

// SnapshotWithIndex is Snapshot plus the Raft index it reflects, read under
// the same lock.
func (s *Store) SnapshotWithIndex() (*swarmpb.Snapshot, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d := s.d
	return &swarmpb.Snapshot{
		Version:  SnapshotVersion,
		Clusters: sortedValues(d.clusters),
		Nodes:    sortedValues(d.nodes),
		Services: sortedValues(d.services),
		Tasks:    sortedValues(d.tasks),
		Secrets:  sortedValues(d.secrets),
		Networks: sortedValues(d.networks),
		Configs:  sortedValues(d.configs),
		Index:    s.index,
		// Shared, not cloned: remembered requests are never modified.
		AppliedRequests: append([]*swarmpb.AppliedRequest(nil), s.reqs.order...),
	}, s.index
}

// Restore replaces the whole state with snap at Raft index index, rebuilding
// the indexes, and closes every watcher. The index argument wins over
// snap.Index, because the FSM knows which log position it is restoring to. The snapshot is cloned, so the caller
// keeps ownership. On error the store is unchanged and watchers stay open.
func (s *Store) Restore(index uint64, snap *swarmpb.Snapshot) error {
	if v := snap.GetVersion(); v != SnapshotVersion {
		return fmt.Errorf("restore: snapshot version %d, this manager understands %d: %w", v, SnapshotVersion, ErrInvalid)
	}
	d := newData()
	if err := load(d.clusters, "cluster", snap.GetClusters(), nil); err != nil {
		return err
	}
	if err := load(d.nodes, "node", snap.GetNodes(), nil); err != nil {
		return err
	}
	err := load(d.services, "service", snap.GetServices(), func(sv *swarmpb.Service) error {
		name := sv.GetSpec().GetName()
		if name == "" {
			return nil
		}
		if other, ok := d.serviceByName[name]; ok {
			return fmt.Errorf("restore: service %s: name %q is used by service %s: %w", sv.GetId(), name, other, ErrNameConflict)
		}
		d.indexService(sv)
		return nil
	})
	if err != nil {
		return err
	}
	var specs specCache
	err = load(d.tasks, "task", snap.GetTasks(), func(t *swarmpb.Task) error {
		// As applied tasks do (shareTaskSpec): one copy of a service's
		// spec, not one per task.
		if sv := d.services[t.ServiceId]; sv != nil && sv.SpecVersion == t.SpecVersion && specs.same(sv.Spec, t.Spec) {
			t.Spec = sv.Spec
		}
		d.indexTask(t)
		return nil
	})
	if err != nil {
		return err
	}
	if err := loadNamed(d, kindSecret, d.secrets, snap.GetSecrets(), func(s *swarmpb.Secret) string { return s.GetName() }); err != nil {
		return err
	}
	if err := loadNamed(d, kindNetwork, d.networks, snap.GetNetworks(), func(n *swarmpb.Network) string { return n.GetSpec().GetName() }); err != nil {
		return err
	}
	if err := loadNamed(d, kindConfig, d.configs, snap.GetConfigs(), func(c *swarmpb.Config) string { return c.GetName() }); err != nil {
		return err
	}

	reqs := newRequestLog()
	for _, r := range snap.GetAppliedRequests() {
		if r.GetId() == "" {
			return fmt.Errorf("restore: applied request with empty id: %w", ErrInvalid)
		}
		reqs.add(proto.Clone(r).(*swarmpb.AppliedRequest))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = d
	s.reqs = reqs
	s.index = index
	s.closeWatchers()
	return nil
}

// loadNamed loads objects whose names are unique within their kind.
func loadNamed[T object](d *data, kind nameKind, m map[string]T, objs []T, nameOf func(T) string) error {
	return load(m, string(kind), objs, func(o T) error {
		name := nameOf(o)
		if name == "" {
			return nil
		}
		if other, ok := d.objectByName[kind][name]; ok {
			return fmt.Errorf("restore: %s %s: name %q is used by %s %s: %w", kind, o.GetId(), name, kind, other, ErrNameConflict)
		}
		d.indexName(kind, name, o.GetId())
		return nil
	})
}

func load[T object](m map[string]T, noun string, objs []T, index func(T) error) error {
	for _, o := range objs {
		id := o.GetId()
		if id == "" {
			return fmt.Errorf("restore: %s with empty id: %w", noun, ErrInvalid)
		}
		if _, dup := m[id]; dup {
			return fmt.Errorf("restore: %s %s: %w", noun, id, ErrExists)
		}
		c := proto.Clone(o).(T)
		m[id] = c
		if index != nil {
			if err := index(c); err != nil {
				return err
			}
		}
	}
	return nil
}
