package state

import (
	"container/heap"
	"iter"
	"maps"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Reads that stay cheap under the store's lock however large the state
// grows: the lock blocks Raft apply, so a reader of a million tasks should
// copy pointers and sort (if at all) after its View, and a paged list
// should cost O(n log page) per page rather than sorting everything.

// TasksByServiceUnordered is TasksByService without the sort.
func (r readTx) TasksByServiceUnordered(id string) []*swarmpb.Task {
	set := r.d.tasksByService[id]
	if len(set) == 0 {
		return nil
	}
	out := make([]*swarmpb.Task, 0, len(set))
	for _, t := range set {
		out = append(out, t)
	}
	return out
}

// TaskServiceIDs lists, unordered, the service IDs that tasks refer to,
// including services that were removed and whose tasks remain.
func (r readTx) TaskServiceIDs() []string {
	out := make([]string, 0, len(r.d.tasksByService))
	for id := range r.d.tasksByService {
		out = append(out, id)
	}
	return out
}

// PortOwner returns the service that publishes k, or nil.
func (r readTx) PortOwner(k PortKey) *swarmpb.Service {
	id, ok := r.d.portOwner[k]
	if !ok {
		return nil
	}
	return r.d.services[id]
}

// NodesPage returns, in ID order, up to limit nodes whose IDs sort after
// after ("" starts at the beginning).
func (r readTx) NodesPage(after string, limit int) []*swarmpb.Node {
	return firstAfter(maps.Keys(r.d.nodes), lookup(r.d.nodes), after, limit, nil)
}

// ServicesPage is NodesPage for services.
func (r readTx) ServicesPage(after string, limit int) []*swarmpb.Service {
	return firstAfter(maps.Keys(r.d.services), lookup(r.d.services), after, limit, nil)
}

func lookup[T any](m map[string]T) func(string) T { return func(id string) T { return m[id] } }

// TaskQuery selects tasks for TasksPage.
type TaskQuery struct {
	ServiceIDs []string // tasks of these services; none: of every service
	ByNode     bool     // only tasks on NodeID ("" = unassigned)
	NodeID     string
}

// TasksPage returns, in ID order, up to limit tasks matching q whose IDs
// sort after after. It walks the smallest index that covers q.
func (r readTx) TasksPage(q TaskQuery, after string, limit int) []*swarmpb.Task {
	var keep func(*swarmpb.Task) bool
	if q.ByNode {
		keep = func(t *swarmpb.Task) bool { return t.GetNodeId() == q.NodeID }
	}
	var ids iter.Seq[string]
	switch {
	case len(q.ServiceIDs) > 0:
		ids = func(yield func(string) bool) {
			seen := map[string]bool{}
			for _, sid := range q.ServiceIDs {
				if seen[sid] {
					continue
				}
				seen[sid] = true
				for id := range r.d.tasksByService[sid] {
					if !yield(id) {
						return
					}
				}
			}
		}
	case q.ByNode:
		ids = maps.Keys(r.d.tasksByNode[q.NodeID])
	default:
		ids = maps.Keys(r.d.tasks)
	}
	return firstAfter(ids, lookup(r.d.tasks), after, limit, keep)
}

// firstAfter returns, sorted by ID, the limit objects (get(id)) with the
// smallest IDs greater than after that keep (nil: all) accepts. It keeps
// a max-heap of limit objects, so it costs O(n log limit) time and
// O(limit) memory, and it looks an object up only when its ID could make
// the page.
func firstAfter[T object](ids iter.Seq[string], get func(string) T, after string, limit int, keep func(T) bool) []T {
	if limit <= 0 {
		return nil
	}
	h := &idHeap[T]{}
	for id := range ids {
		if id <= after || (len(h.s) == limit && id >= h.s[0].GetId()) {
			continue
		}
		o := get(id)
		if keep != nil && !keep(o) {
			continue
		}
		if len(h.s) < limit {
			heap.Push(h, o)
			continue
		}
		h.s[0] = o
		heap.Fix(h, 0)
	}
	out := h.s
	sortByID(out)
	return out
}

// idHeap is a max-heap by ID.
type idHeap[T object] struct{ s []T }

func (h *idHeap[T]) Len() int           { return len(h.s) }
func (h *idHeap[T]) Less(i, j int) bool { return h.s[i].GetId() > h.s[j].GetId() }
func (h *idHeap[T]) Swap(i, j int)      { h.s[i], h.s[j] = h.s[j], h.s[i] }
func (h *idHeap[T]) Push(x any)         { h.s = append(h.s, x.(T)) }
func (h *idHeap[T]) Pop() any {
	n := len(h.s) - 1
	x := h.s[n]
	h.s = h.s[:n]
	return x
}
