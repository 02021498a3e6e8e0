// Package raft owns the replicated log: a hashicorp/raft node with
// raft-boltdb/v2 as log and stable store and file snapshots, the FSM that
// applies versioned command envelopes to the state store, write
// forwarding from followers to the leader, linearizable read barriers,
// membership changes, leadership notifications for leader-only work, and
// the recovery from permanent quorum loss. Raft traffic shares the
// manager's single TLS port (StreamLayer). hashicorp/raft's own log lines
// go through the node's *slog.Logger (an hclog adapter, hclog.go), so a
// manager writes one log format. Waits between attempts use
// internal/retry. See DESIGN.md for why each choice was made.
//
// raft sits above state and below everything that serves requests: it
// imports proto, state and internal helpers, never api, manager, node, cli,
// orchestrator or scheduler (internal/layers checks this).
package raft
