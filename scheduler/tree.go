package scheduler

// candidate is an eligible node while one group is being placed.
type candidate struct {
	n      *nodeInfo
	rank   int  // position in id order: the final tie-break
	failed bool // recently failed this service
	svc    int  // tasks of the service on the node
	index  int  // position in leaf.cands
	leaf   *spreadNode
}

func (a *candidate) lessThan(b *candidate) bool {
	if a.failed != b.failed {
		return !a.failed
	}
	if a.svc != b.svc {
		return a.svc < b.svc
	}
	if a.n.total != b.n.total {
		return a.n.total < b.n.total
	}
	return a.rank < b.rank
}

func (a *candidate) setIndex(i int) { a.index = i }

// spreadNode is one value of one spread descriptor (or the root). Leaves hold
// candidates, inner nodes hold children, both in heaps, so that picking the
// next node and updating after a placement cost O(depth · log fan-out).
type spreadNode struct {
	parent   *spreadNode
	index    int // position in parent.children
	count    int // tasks of the service on the eligible nodes below
	children ixHeap[*spreadNode]
	cands    ixHeap[*candidate]
	leaf     bool

	byValue map[spreadValue]*spreadNode // only while building
}

type spreadValue struct {
	value   string
	missing bool
}

func (a *spreadNode) empty() bool {
	if a.leaf {
		return len(a.cands.items) == 0
	}
	return len(a.children.items) == 0
}

func (a *spreadNode) best() *candidate {
	for !a.leaf {
		a = a.children.items[0]
	}
	return a.cands.items[0]
}

// lessThan: fewer tasks of the service first; ties go to the subtree holding
// the better node. Subtrees are disjoint, so this is a strict total order.
func (a *spreadNode) lessThan(b *spreadNode) bool {
	if a.count != b.count {
		return a.count < b.count
	}
	return a.best().lessThan(b.best())
}

func (a *spreadNode) setIndex(i int) { a.index = i }

func buildTree(g *taskGroup, cands []candidate) *spreadNode {
	root := &spreadNode{leaf: len(g.spread) == 0}
	for i := range cands {
		c := &cands[i]
		sn := root
		for _, key := range g.spread {
			v, ok := protoAttr(c.n.node, key.kind, key.label)
			sv := spreadValue{value: v, missing: !ok}
			if sn.byValue == nil {
				sn.byValue = map[spreadValue]*spreadNode{}
			}
			child := sn.byValue[sv]
			if child == nil {
				child = &spreadNode{parent: sn}
				sn.byValue[sv] = child
				sn.children.items = append(sn.children.items, child)
			}
			sn = child
		}
		sn.leaf = true
		c.leaf = sn
		sn.cands.items = append(sn.cands.items, c)
	}
	root.finish()
	return root
}

// finish computes counts and heapifies bottom-up.
func (a *spreadNode) finish() {
	a.byValue = nil
	if a.leaf {
		for _, c := range a.cands.items {
			a.count += c.svc
		}
		a.cands.init()
		return
	}
	for _, ch := range a.children.items {
		ch.finish()
		a.count += ch.count
	}
	a.children.init()
}

// pick returns the best candidate, or nil if none is left.
func (a *spreadNode) pick() *candidate {
	if a.empty() {
		return nil
	}
	return a.best()
}

// placed propagates one more task placed below leaf a (whose candidate heap
// is already fixed) up to the root.
func (a *spreadNode) placed() {
	for sn := a; sn != nil; sn = sn.parent {
		sn.count++
		if p := sn.parent; p != nil {
			if sn.empty() {
				p.children.remove(sn.index)
			} else {
				p.children.fix(sn.index)
			}
		}
	}
}

// ixHeap is a binary min-heap whose elements know their position.
type ixHeap[T interface {
	lessThan(T) bool
	setIndex(int)
}] struct {
	items []T
}

func (h *ixHeap[T]) init() {
	for i, it := range h.items {
		it.setIndex(i)
	}
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *ixHeap[T]) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].setIndex(i)
	h.items[j].setIndex(j)
}

func (h *ixHeap[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.items[i].lessThan(h.items[p]) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *ixHeap[T]) down(i int) bool {
	start, n := i, len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h.items[r].lessThan(h.items[l]) {
			m = r
		}
		if !h.items[m].lessThan(h.items[i]) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > start
}

func (h *ixHeap[T]) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h *ixHeap[T]) remove(i int) {
	last := len(h.items) - 1
	if i != last {
		h.swap(i, last)
	}
	var zero T
	h.items[last] = zero
	h.items = h.items[:last]
	if i != last {
		h.fix(i)
	}
}
