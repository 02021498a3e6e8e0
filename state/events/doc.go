// Package events turns the store's watch into the cluster event stream that
// Control.WatchEvents serves ('swarmctl events') and that the dashboard
// follows: one ClusterEvent per applied store action, positioned by the
// Raft index of its entry and its place in that entry.
//
// A Journal runs on every manager, from before Raft replays its log, so it
// sees every entry this replica applies. Every manager applies every entry
// with the leader's append time, so the same position names the same event
// on every manager: a client that loses its manager resumes on another
// from the last position it saw, with no gap and no duplicate.
//
// Everything is bounded. The journal keeps the last Size events in a ring,
// for clients that start in the past (--since) or resume. A task event
// (nearly all of them) is kept as the strings and states it reports, taken
// when it is applied, and described as a ClusterEvent when a client first
// reads it, since most are never read; the ring holds on to no store
// object (a removed task's spec may be large). A position older
// than the ring (or from before this manager's replica began) is refused
// with ErrTooOld rather than silently skipped. Each subscriber has a queue
// of Queue events; one that falls behind is dropped with ErrSlow, and never
// delays the journal, let alone Raft apply (the store's watch buffers for
// the journal).
//
// A snapshot restore replaces the store wholesale and cannot be described
// as events: the journal starts over from the restored index, and current
// subscribers end with ErrTooOld (the events between their position and
// the snapshot are not known here).
//
// events imports state and proto only.
package events
