package manager

import (
	"context"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// runRoleManager carries out demotions for one leadership term. Promotion
// needs no leader action: the promoted node renews its certificate and
// asks to join Raft itself. Demotion removes the node from the Raft
// configuration (handing leadership over first when it is this manager),
// then records its role as worker, which tells its agent to stop its
// manager half.
func (m *Manager) runRoleManager(ctx context.Context) error {
	// Raft membership changes are not store events, and a step can fail
	// transiently; a slow tick retries.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	watchRoles(ctx, m.store, tick.C, func() { m.reconcileRoles(ctx) })
	return nil
}

// watchRoles calls reconcile once at the start, then again after each node
// event, tick, or watch restart, until ctx ends. Every other event (tasks
// above all, the bulk of the traffic) is skipped without a rescan: roles
// depend only on nodes and on the Raft configuration the tick covers.
func watchRoles(ctx context.Context, store *state.Store, tick <-chan time.Time, reconcile func()) {
	events, cancel := store.Watch()
	defer func() { cancel() }()
	for {
		reconcile()
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-events:
				if !ok {
					// Dropped for falling behind: events may be lost, so
					// rescan once on the new watch.
					cancel()
					events, cancel = store.Watch()
					break wait
				}
				if ev.Node() != nil {
					break wait
				}
			case <-tick:
				break wait
			}
		}
	}
}

func (m *Manager) reconcileRoles(ctx context.Context) {
	members, err := m.raft.Members()
	if err != nil {
		return
	}
	voter := map[string]bool{}
	for _, mb := range members {
		voter[mb.ID] = mb.Voter
	}
	var nodes []*swarmpb.Node
	m.store.View(func(tx state.ReadTx) { nodes = tx.ListNodes() })
	for _, n := range nodes {
		if n.GetSpec().GetDesiredRole() != swarmpb.NodeRole_NODE_ROLE_WORKER {
			continue
		}
		if _, isMember := voter[n.Id]; isMember {
			if n.Id == m.cfg.NodeID {
				m.log.Info("this manager is being demoted: handing leadership over")
				if err := m.raft.TransferLeadership(); err != nil {
					m.log.Warn("leadership transfer failed; will retry", "err", err)
				}
				return
			}
			if err := m.raft.RemoveServer(ctx, n.Id); err != nil {
				m.log.Warn("removing demoted manager from raft failed; will retry", "node", n.Id, "err", err)
				continue
			}
			m.log.Info("demoted manager removed from raft", "node", n.Id)
		}
		if n.Role == swarmpb.NodeRole_NODE_ROLE_MANAGER {
			c := proto.Clone(n).(*swarmpb.Node)
			c.Role = swarmpb.NodeRole_NODE_ROLE_WORKER
			if _, err := m.raft.Apply(ctx, state.Batch(state.Update(c))); err != nil {
				m.log.Warn("recording demotion failed; will retry", "node", n.Id, "err", err)
			}
		}
	}
}
