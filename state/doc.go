// Package state owns the manager's in-memory copy of the replicated cluster
// state: clusters, nodes, services, tasks, networks, secrets and configs, plus the secondary
// indexes (service name, published port, tasks by service, tasks by node)
// that the orchestrator, scheduler and dispatcher query on hot paths. Names
// and published ports are unique, checked where batches are applied.
//
// The Raft FSM is the only writer: it calls ApplyBatch for every committed
// entry, so every replica runs the same deterministic validation and reaches
// the same state. Everything else reads, and proposes batches built with
// this package's Batch, Create, Update and Delete (actions.go), bounded by
// BatchLen; they live here, at the bottom, so that every layer can build
// writes without importing another.
//
// Three design rules hold the package together:
//
//   - Objects are copy-on-write. ApplyBatch clones what it is given and never
//     mutates a stored object afterwards; an update stores a fresh object.
//     Readers may therefore keep the pointers they got from a View, a Snapshot
//     or an Event for as long as they like, without locks, but must
//     proto.Clone before changing anything.
//
//   - An object's Meta.Version is the Raft index of the entry that last wrote
//     it. That makes versions identical on every replica, and lets callers do
//     optimistic concurrency: read, modify, propose an UPDATE carrying the
//     version they read, and get ErrConflict if someone else got there first.
//     Two task patches are the exception, for fields that only move forward:
//     a status patch (UpdateTaskStatus, the agents' reports) and a
//     desired-state patch (UpdateTaskDesired, the orchestrator's shutdowns)
//     apply to the task as stored if they still advance it, and are
//     skipped otherwise, never a conflict; the stored task and its event
//     are those a whole-task update with the same fields would make.
//
//   - Watches have no gap and no duplicate. ViewAndWatch registers the watcher
//     under the same lock that produced the view, so the view plus the events
//     describe every applied index exactly once. Delivery is buffered without
//     bound per watcher, so a slow consumer can never stall Raft apply. A
//     Restore swaps the whole state, which cannot be expressed as events, so
//     it closes every watcher's channel and consumers start over.
//
// state imports only proto (and the standard library and protobuf). It must
// not import api, orchestrator, scheduler, raft, manager, node or agent:
// everything above it reads and writes through it.
package state
