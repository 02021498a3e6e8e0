package api

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
)

// A certificate says who a node is and what role it had when the
// certificate was signed; it stays valid for 90 days. Whether the node may
// still act in that role is decided here, from the cluster state, on every
// call and every Raft connection, and again on open streams and
// connections whenever the state changes. That is what makes `node demote`
// and `node rm` take effect at once, whatever certificate the node holds.

// Scope is what a caller asks to do.
type Scope int

const (
	// ScopeNode: node-scoped calls (Dispatcher, certificate renewal). The
	// node must still exist.
	ScopeNode Scope = iota + 1
	// ScopeManager: manager-only calls (Control, RaftMembership). The node
	// must exist and be meant to be a manager (spec.desired_role). Its
	// Node.role may still say worker: a promoted worker renews its
	// certificate and calls RaftMembership.Join before it becomes one.
	ScopeManager
	// ScopeRaft: Raft connections. As ScopeManager, and the node must be in
	// the Raft configuration.
	ScopeRaft
)

// NodeState is what the authorizer reads from the replicated store.
// *state.Store implements it.
type NodeState interface {
	View(fn func(tx state.ReadTx))
	Watch() (events <-chan state.Event, cancel func())
}

// RaftConfig is the Raft configuration as this manager knows it (the
// latest one in its log). *raft.Node implements it.
type RaftConfig interface {
	Members() ([]raft.Member, error)
}

// Authorizer decides access from the current cluster state. One runs per
// manager, shared by the gRPC interceptors and the TLS mux.
//
// The state it reads is this manager's replica: a follower lags the leader
// by a few milliseconds, so a node demoted or removed on the leader may be
// served by a follower for that long, and never for longer than it takes
// the entry to reach the follower.
type Authorizer struct {
	store     NodeState
	raft      RaftConfig
	clusterID string
	// Recheck bounds how long a change that is not a store event (a Raft
	// configuration change with no node write after it, such as a failed
	// join being undone) takes to close an open Raft connection. Node
	// changes (demote, rm) are store events and act at once, and a
	// demoted manager's removal from Raft is followed by its role write.
	Recheck time.Duration

	mu     sync.Mutex
	holds  map[*hold]struct{}
	byNode map[string]map[*hold]struct{} // node ID -> its holds

	rechecked atomic.Int64 // holds decided again by recheck, for tests
}

type hold struct {
	id     ca.Identity
	scope  Scope
	revoke func(error)
	once   sync.Once
}

// NewAuthorizer returns an authorizer for the cluster clusterID. Run must
// run for open streams and connections to be revoked.
func NewAuthorizer(store NodeState, rc RaftConfig, clusterID string) *Authorizer {
	return &Authorizer{store: store, raft: rc, clusterID: clusterID, Recheck: DefaultRecheck,
		holds: map[*hold]struct{}{}, byNode: map[string]map[*hold]struct{}{}}
}

// DefaultRecheck is the authorizer's periodic recheck. It was 500 ms, which
// woke every manager twice a second with nothing to do; every change but a
// bare Raft configuration change is a store event and rechecked at once.
const DefaultRecheck = 5 * time.Second

// Check reports whether id may act in scope now; the error is a
// PermissionDenied with a message for the node's operator.
func (a *Authorizer) Check(id ca.Identity, scope Scope) error {
	var node *swarmpb.Node
	a.store.View(func(tx state.ReadTx) { node = tx.GetNode(id.NodeID) })
	var cfg *membership
	if scope == ScopeRaft || (node == nil && scope == ScopeManager) {
		cfg = a.membership()
	}
	return a.decide(id, scope, node, cfg)
}

// membership is a read of the Raft configuration, shared by the checks of
// one recheck round.
type membership struct {
	members map[string]bool
	err     error
}

func (a *Authorizer) membership() *membership {
	ms, err := a.raft.Members()
	m := &membership{members: map[string]bool{}, err: err}
	for _, x := range ms {
		m.members[x.ID] = true
	}
	return m
}

func (a *Authorizer) decide(id ca.Identity, scope Scope, node *swarmpb.Node, cfg *membership) error {
	if a.clusterID != "" && id.ClusterID != a.clusterID {
		return deniedf("permission denied: the certificate of node %s belongs to cluster %s, not to this cluster (%s)", id.NodeID, id.ClusterID, a.clusterID)
	}
	if scope == ScopeNode {
		if node == nil {
			return deniedf("permission denied: node %s is not part of this cluster: it was removed ('swarmctl node rm'), and its certificate is no longer accepted; run 'swarmctl leave' on it, then join again", id.NodeID)
		}
		return nil
	}
	if node != nil && node.GetSpec().GetDesiredRole() != swarmpb.NodeRole_NODE_ROLE_MANAGER {
		return deniedf("permission denied: node %s is not a manager any more (it was demoted), and its manager certificate is no longer accepted", id.NodeID)
	}
	if node != nil && scope == ScopeManager {
		return nil
	}
	// Either a Raft connection, or a manager this replica does not know
	// yet. The Raft configuration decides:
	//   - an empty one is a manager that has just started and waits for
	//     the leader to add it (a join, a promotion): it cannot tell the
	//     leader from anyone else yet, and trusts any manager certificate
	//     of its cluster, as it must to be brought up to date;
	//   - a node that is in it but not in the store is one whose creation
	//     this replica has not applied yet (a node is created long before
	//     it is added to Raft, and cannot be deleted while it is a member).
	if cfg.err != nil {
		return deniedf("permission denied: cannot read this manager's Raft configuration to check node %s: %v", id.NodeID, cfg.err)
	}
	if len(cfg.members) == 0 || cfg.members[id.NodeID] {
		return nil
	}
	if node == nil {
		return deniedf("permission denied: node %s is not part of this cluster: it was removed, and its certificate is no longer accepted", id.NodeID)
	}
	return deniedf("permission denied: node %s is not a member of the Raft configuration", id.NodeID)
}

// Admit checks id like Check and, when it may proceed, keeps watching:
// revoke is called once, with the reason, as soon as a later change of the
// cluster state takes the access away. release must be called when the
// stream or connection ends.
func (a *Authorizer) Admit(id ca.Identity, scope Scope, revoke func(error)) (release func(), err error) {
	if err := a.Check(id, scope); err != nil {
		return nil, err
	}
	h := &hold{id: id, scope: scope, revoke: revoke}
	a.mu.Lock()
	a.holds[h] = struct{}{}
	if a.byNode[id.NodeID] == nil {
		a.byNode[id.NodeID] = map[*hold]struct{}{}
	}
	a.byNode[id.NodeID][h] = struct{}{}
	a.mu.Unlock()
	release = func() {
		a.mu.Lock()
		a.forget(h)
		a.mu.Unlock()
	}
	// A store change applied between the first check and the
	// registration would otherwise wait for the periodic recheck: check
	// again now that any later change's event finds the hold.
	if err := a.Check(id, scope); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// forget removes h; it runs under mu.
func (a *Authorizer) forget(h *hold) {
	delete(a.holds, h)
	if hs := a.byNode[h.id.NodeID]; hs != nil {
		delete(hs, h)
		if len(hs) == 0 {
			delete(a.byNode, h.id.NodeID)
		}
	}
}

// Run rechecks the open streams and connections of the nodes that
// changed after each burst of node changes, and every one of them every
// Recheck (Raft configuration changes are not store events), until ctx
// ends. A node change rechecks that node's holds only: rechecking all of
// them cost O(nodes) per change, O(nodes^2) over a cluster's formation.
func (a *Authorizer) Run(ctx context.Context) error {
	events, cancel := a.store.Watch()
	defer func() { cancel() }()
	t := time.NewTicker(a.Recheck)
	defer t.Stop()
	for {
		var only map[string]bool // nil: every hold
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case ev, ok := <-events:
			if !ok {
				// A snapshot was restored: watch again, recheck everything.
				cancel()
				events, cancel = a.store.Watch()
				break
			}
			changed, lost := drainNodeEvents(ev, events)
			if lost {
				cancel()
				events, cancel = a.store.Watch()
				break
			}
			if len(changed) == 0 {
				continue
			}
			only = changed
		}
		a.recheck(only)
	}
}

// drainNodeEvents takes in the events already queued after ev and returns
// the nodes they concern; lost is true when the watch was closed.
func drainNodeEvents(ev state.Event, events <-chan state.Event) (nodes map[string]bool, lost bool) {
	nodes = map[string]bool{}
	if n := ev.Node(); n != nil {
		nodes[n.Id] = true
	}
	for i := 0; i < 4096; i++ {
		select {
		case e, ok := <-events:
			if !ok {
				return nil, true
			}
			if n := e.Node(); n != nil {
				nodes[n.Id] = true
			}
		default:
			return nodes, false
		}
	}
	return nodes, false
}

// recheck decides again for the holds of the nodes in only (every hold
// when only is nil) and revokes those that lost their access.
func (a *Authorizer) recheck(only map[string]bool) {
	a.mu.Lock()
	var holds []*hold
	raftHolds := false
	if only == nil {
		holds = make([]*hold, 0, len(a.holds))
		for h := range a.holds {
			holds = append(holds, h)
		}
	} else {
		for id := range only {
			for h := range a.byNode[id] {
				holds = append(holds, h)
			}
		}
	}
	for _, h := range holds {
		raftHolds = raftHolds || h.scope != ScopeNode
	}
	a.mu.Unlock()
	a.rechecked.Add(int64(len(holds)))
	if len(holds) == 0 {
		return
	}
	nodes := make([]*swarmpb.Node, len(holds))
	a.store.View(func(tx state.ReadTx) {
		for i, h := range holds {
			nodes[i] = tx.GetNode(h.id.NodeID)
		}
	})
	var cfg *membership
	if raftHolds {
		cfg = a.membership()
	}
	for i, h := range holds {
		if err := a.decide(h.id, h.scope, nodes[i], cfg); err != nil {
			a.mu.Lock()
			a.forget(h)
			a.mu.Unlock()
			h.once.Do(func() { h.revoke(err) })
		}
	}
}
