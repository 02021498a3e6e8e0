// Package raft owns the replicated log: a hashicorp/raft node with
// raft-boltdb/v2 as log and stable store and file snapshots, the FSM that
// applies versioned command envelopes to the state store, write
// forwarding from followers to the leader, linearizable read barriers,
// membership changes, leadership notifications for leader-only work, and
// the recovery from permanent quorum loss. Raft traffic shares the
// manager's single TLS port (StreamLayer). See DESIGN.md for why each
// choice was made.
package raft
