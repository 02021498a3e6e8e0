// Package orchestrator holds the leader-only loops that turn services into
// placed tasks: the orchestrator reconciles each service's desired state
// (replicas or one task per eligible node, restart policy, rolling
// updates, task history, removed services) into task objects, and the
// scheduling loop feeds the pure scheduler package with store events and
// writes its placements. Both are state-driven: every decision is derived
// from the replicated store, so a new leader simply continues from what it
// reads, with no duplicate and no lost task. Both consume store watches and
// write through Raft in batches, and both bound the work of one pass (see
// maxPassTasks and maxSchedulePass) so that no accepted spec, however
// large, can exhaust the leader.
package orchestrator
