// Package scheduler decides where tasks run, and runs the leader's
// scheduling loop that commits those decisions. Its core is a pure placement engine:
// given what it has been told about nodes and about the tasks that count
// against them, Schedule returns a decision (a node, or a user-facing reason)
// for each pending task.
//
// The package owns the placement policy and nothing else: the filters that
// make a node eligible (ready, availability, constraints, resources, max
// replicas per node, host-mode ports), the ranking among eligible nodes
// (spread preferences, recent failures, task counts, node id), the parsing and
// validation of placement constraints (reused by the CLI and the API), and the
// in-memory bookkeeping of node load.
//
// It is pure (no Raft, no gRPC, no goroutines, no clock, no I/O) so that the
// leader's scheduling loop stays the single writer: the loop feeds it the
// state store's events (UpsertNode, RemoveNode, AddTask, RemoveTask,
// NodeFailed), asks it to place a batch, and commits the decisions to Raft in
// one proposal. Being pure also makes it deterministic (identical inputs give
// identical decisions, ties broken by node id), cheap to test with plain
// tables, and cheap to rebuild from the store after a leader change. A
// Scheduler is not safe for concurrent use; its owner serialises calls.
//
// That owner is the scheduling loop, package scheduler/loop (loop.Run),
// beside the engine it drives: it does the I/O (a store watch, Raft writes
// through the small Applier interface it owns), so this package stays free
// of I/O, goroutines and clocks.
//
// scheduler may import only proto (spec imports its constraint parser). It
// must not import state, orchestrator, api, manager, node or agent.
package scheduler
