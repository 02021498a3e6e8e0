// Package manager assembles a manager: the single TLS port (shared by Raft
// and gRPC, told apart by ALPN), the Raft node over the state store, the
// gRPC services of package api, and the leader-only work that runs for the
// length of a leadership term under one errgroup: node liveness (the
// dispatcher), role changes, the orchestrator and the scheduling loop.
// When any part fails the term's work stops and restarts, visibly, rather
// than leaving a goroutine that only logs.
package manager
