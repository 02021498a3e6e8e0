// Package loop is the leader's scheduling loop, beside the scheduler it
// drives: it keeps a scheduler.Scheduler in step with the store's events and
// writes its placements through Raft, in bounded passes, for the length of a
// leadership term. It is a package of its own so that package scheduler
// stays pure placement (no store, no Raft, no clock).
//
// loop may import scheduler, state and proto; it must not import api,
// manager, node or orchestrator.
package loop
