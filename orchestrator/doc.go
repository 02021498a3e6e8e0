// Package orchestrator holds the leader-only loop that turns services into
// tasks: it reconciles each service's desired state (replicas or one task
// per eligible node, restart policy, rolling updates and rollbacks, task
// history, removed services) into task objects, which the scheduling loop
// (scheduler/loop.Run) then places. It is state-driven: every decision is
// derived from the replicated store, so a new leader simply continues from
// what it reads, with no duplicate and no lost task. It consumes store
// watches and writes through Raft in batches (state.BatchLen bounds each
// entry), and it bounds the work of one pass (maxPassTasks) so that no
// accepted spec, however large, can exhaust the leader.
//
// Update states, failure actions and update orders are the proto enums
// (read through their accessors, which also understand the deprecated
// strings written by older versions); a rollback started by the failure
// action is recorded as such in the status, not only in its message.
//
// orchestrator may import state, scheduler (constraint matching), spec,
// proto and internal/identity. It must not import api, manager, node or
// agent: it writes through the small Raft interface it owns, and builds
// its batches with package state.
package orchestrator
