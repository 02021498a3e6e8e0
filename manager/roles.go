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
	watchRoles(ctx, m.store, roleRetry, roleSweep, func() bool { return m.reconcileRoles(ctx) })
	return nil
}

// roleRetry is how soon a demotion step that failed (a transient Raft
// error, a leadership transfer under way) is tried again; roleSweep how
// often the roles are rescanned with nothing left to do, for a Raft
// configuration change that no node event follows (a join whose role
// write failed after a concurrent demotion).
const (
	roleRetry = time.Second
	roleSweep = 10 * time.Second
)

// watchRoles calls reconcile once at the start, then again after each node
// event or watch restart, until ctx ends; and after retry when reconcile
// reports work left (a step failed), or after sweep when it does not.
// Every other event (tasks above all, the bulk of the traffic) is skipped
// without a rescan: roles depend only on nodes, and the Raft configuration
// changes that matter here (removing a demoted manager) are this loop's
// own steps, each followed by a node write. An idle leader with nothing to
// demote wakes here once per sweep (it used to tick every second).
func watchRoles(ctx context.Context, store *state.Store, retry, sweep time.Duration, reconcile func() bool) {
	events, cancel := store.Watch()
	defer func() { cancel() }()
	timer := time.NewTimer(sweep)
	defer timer.Stop()
	for {
		if reconcile() {
			timer.Reset(retry)
		} else {
			timer.Reset(sweep)
		}
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
			case <-timer.C:
				break wait
			}
		}
	}
}

// reconcileRoles carries out the demotions the store asks for and reports
// whether a step failed and must be retried.
func (m *Manager) reconcileRoles(ctx context.Context) (retry bool) {
	members, err := m.raft.Members()
	if err != nil {
		return true
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
				// Leadership moves, ending this term; until then, retry.
				return true
			}
			if err := m.raft.RemoveServer(ctx, n.Id); err != nil {
				m.log.Warn("removing demoted manager from raft failed; will retry", "node", n.Id, "err", err)
				retry = true
				continue
			}
			m.log.Info("demoted manager removed from raft", "node", n.Id)
		}
		if n.Role == swarmpb.NodeRole_NODE_ROLE_MANAGER {
			c := proto.Clone(n).(*swarmpb.Node)
			c.Role = swarmpb.NodeRole_NODE_ROLE_WORKER
			if _, err := m.raft.Apply(ctx, state.Batch(state.Update(c))); err != nil {
				m.log.Warn("recording demotion failed; will retry", "node", n.Id, "err", err)
				retry = true
			}
		}
	}
	return retry
}
