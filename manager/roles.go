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
	watchRoles(ctx, m.store, roleRetry, roleSweep, func(nodes []string) bool { return m.reconcileRoles(ctx, nodes) })
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

// maxRoleBatch bounds the node events taken off the watch for one
// reconcile of the nodes they name.
const maxRoleBatch = 4096

// watchRoles calls reconcile(nil) (every node) at the start, after a watch
// restart, and after retry when the last reconcile reports work left (a
// step failed) or after sweep when it does not; and reconcile(ids) with
// the nodes that changed after node events, until ctx ends. Every other
// event (tasks above all, the bulk of the traffic) is skipped without a
// rescan: roles depend only on nodes, and the Raft configuration changes
// that matter here (removing a demoted manager) are this loop's own steps,
// each followed by a node write. An idle leader with nothing to demote
// wakes here once per sweep.
//
// A node event looks at the nodes it names, not at every node: a
// cluster of n nodes forming, or its nodes changing status, would
// otherwise cost O(n) per event and O(n^2) in all (0.57 s of a 1,000-node
// formation's CPU, BENCHMARKS.md section 14).
func watchRoles(ctx context.Context, store *state.Store, retry, sweep time.Duration, reconcile func(nodes []string) bool) {
	events, cancel := store.Watch()
	defer func() { cancel() }()
	timer := time.NewTimer(sweep)
	defer timer.Stop()
	var changed []string // nil: every node
	for {
		if reconcile(changed) {
			timer.Reset(retry)
		} else if changed == nil {
			timer.Reset(sweep)
		}
		changed = nil
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
				if n := ev.Node(); n != nil {
					var rescan bool
					changed, rescan = drainRoleEvents([]string{n.Id}, events)
					if rescan {
						cancel()
						events, cancel = store.Watch()
						changed = nil
					}
					break wait
				}
			case <-timer.C:
				break wait
			}
		}
	}
}

// drainRoleEvents adds the nodes of the node events already queued to
// ids; rescan is true when the watch was closed (events may be lost).
func drainRoleEvents(ids []string, events <-chan state.Event) (_ []string, rescan bool) {
	for range maxRoleBatch {
		select {
		case ev, ok := <-events:
			if !ok {
				return nil, true
			}
			if n := ev.Node(); n != nil {
				ids = append(ids, n.Id)
			}
		default:
			return ids, false
		}
	}
	return ids, false
}

// reconcileRoles carries out the demotions of the nodes named (every
// node when nodes is nil) and of every Raft member, and reports whether a
// step failed and must be retried.
func (m *Manager) reconcileRoles(ctx context.Context, only []string) (retry bool) {
	members, err := m.raft.Members()
	if err != nil {
		return true
	}
	voter := map[string]bool{}
	for _, mb := range members {
		voter[mb.ID] = mb.Voter
	}
	var nodes []*swarmpb.Node
	m.store.View(func(tx state.ReadTx) {
		if only == nil {
			nodes = tx.ListNodes()
			return
		}
		seen := make(map[string]bool, len(only)+len(members))
		for _, id := range only {
			seen[id] = true
		}
		for _, mb := range members {
			seen[mb.ID] = true
		}
		for id := range seen {
			if n := tx.GetNode(id); n != nil {
				nodes = append(nodes, n)
			}
		}
	})
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
