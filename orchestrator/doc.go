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
// A pass reads every task of the services it reconciles (100,000 at the
// largest), so what wakes a pass matters as much as what a pass costs: a
// task's progress toward RUNNING, or its placement on a node that was
// usable, wakes nothing unless a rolling update waits on it; nor do the
// orchestrator's own writes coming back as events (only it creates and
// deletes tasks and sets their desired state, and within a term only this
// one: the pass that wrote them decided them; a pass counts the tasks it
// creates in a slot's history, so it trims the slot itself); changes that
// only matter to the clean-up of finished tasks wait lazyDelay, and at
// least lazyPassShare times the last pass; a write's entries go to Raft
// together (writesInFlight), so that Raft commits them as one batch; and
// an entry refused for a conflict does not stop the pass's other entries,
// so that the next pass redoes only what was refused. A pass's shutdowns
// and removals change only a task's desired state (and the status of a
// task no agent will report on): once every manager reads them they are
// written as desired-state patches (state.UpdateTaskDesired; Options.
// DesiredPatches), which apply to the task as stored and do not conflict
// with the agents' status reports; scaling 100,000 tasks to 0 otherwise
// took a pass per report that landed between a pass's read and write.
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
