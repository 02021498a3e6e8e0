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
	events, cancel := m.store.Watch()
	defer func() { cancel() }()
	// Raft membership changes are not store events, and a step can fail
	// transiently; a slow tick retries.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		m.reconcileRoles(ctx)
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				cancel()
				events, cancel = m.store.Watch()
			} else if ev.Node() == nil {
				continue // only node changes (and the tick) concern roles
			}
		case <-tick.C:
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
