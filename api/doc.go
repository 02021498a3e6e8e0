// Package api implements the gRPC services a manager serves on its single
// TLS port and on the local socket: CA (join and certificate renewal),
// RaftMembership (join as voter, write forwarding, ping), Dispatcher (agent
// heartbeats and node liveness) and Control (what swarmctl drives).
//
// Access on the TLS port is decided in two steps (auth.go, authz.go): the
// caller's certificate must have the role the method needs, and the
// Authorizer must find, in the current cluster state, that the node still
// holds that standing (exists; is meant to be a manager; for Raft, is a
// member of the configuration). The TLS mux of package manager asks the
// same Authorizer about Raft connections. Open streams and connections are
// revoked as soon as the state changes against them.
//
// The servers depend on small interfaces (Raft, Dialer) rather than on the
// raft package's concrete node, so tests can drive them in-process. Errors
// leave this package as gRPC statuses whose messages a user can act on;
// Status and FromStatus translate between the package sentinels and codes.
package api
