// Package api implements the gRPC services a manager serves on its single
// TLS port and on the local socket: CA (join and certificate renewal),
// RaftMembership (join as voter, write forwarding, ping), Dispatcher (agent
// heartbeats and node liveness) and Control (what swarmctl drives).
//
// The servers depend on small interfaces (Raft, Dialer) rather than on the
// raft package's concrete node, so tests can drive them in-process. Errors
// leave this package as gRPC statuses whose messages a user can act on;
// Status and FromStatus translate between the package sentinels and codes.
package api
