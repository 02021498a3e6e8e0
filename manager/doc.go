// Package manager assembles a manager: the single TLS port (shared by Raft
// and gRPC, told apart by ALPN), the Raft node over the state store, the
// gRPC services of package api, and the leader-only work that runs for
// the length of a leadership term (node liveness, role changes, and later
// orchestration and scheduling) under one errgroup.
package manager
