// Package api implements the gRPC services a manager serves on its single
// TLS port and on the local socket: CA (join and certificate renewal),
// RaftMembership (join as voter, write forwarding, ping), Dispatcher (what
// the agents call) and Control (what swarmctl drives), plus ControlProxy,
// the socket-side relay to the leader. Control.WatchEvents (events.go) is
// the one Control call any manager serves itself, from its event journal.
//
// Access on the TLS port is decided in two steps (auth.go, authz.go): the
// caller's certificate must have the role the method needs, and the
// Authorizer must find, in the current cluster state, that the node still
// holds that standing (exists; is meant to be a manager; for Raft, is a
// member of the configuration). The TLS mux of package manager asks the
// same Authorizer about Raft connections. Open streams and connections are
// revoked as soon as the state changes against them.
//
// The dispatcher is made of separate parts, each a type in files of its
// own, living for one leadership term and reaching the others only through
// a narrow seam:
//
//   - heartbeats and node liveness (dispatcher.go): the Dispatcher itself,
//     which starts and stops the other parts with the term;
//   - task sessions (sessions.go): one store watch fanned out to each
//     node's Session stream, and the batched task status writes;
//   - the endpoint table (endpoints.go): the routing mesh's table, streamed
//     to every node;
//   - the log broker (logbroker.go): routes the agents' PublishLogs streams
//     to ServiceLogs calls. It pushes subscriptions to the nodes through a
//     one-method nodeSender, and the control server reaches it only through
//     LogBroker (control_logs.go), an interface the control server owns;
//   - volume removal (volumes.go): RemoveVolumes pushes a request down every
//     open session and gathers the nodes' ReportVolumeRemoval answers; the
//     control server reaches it only through VolumeBroker;
//   - image sources (images.go): each session message names, per image ID of
//     its tasks, the nodes that have it (the service's image origin, nodes
//     running it), which the nodes fetch missing images from.
//
// These are types in one package rather than subpackages on purpose, for
// now: the parts share the package's error vocabulary (the sentinels and
// Status/FromStatus at the gRPC edge) and its Raft interface, which
// subpackages would have to import from a third package, and two branches
// change api's files in parallel. The seams above are what a later move to
// api/dispatcher and api/logbroker would cut along, without changing a
// caller other than the manager's wiring.
//
// The servers depend on small interfaces (Raft, Dialer, Router, LogBroker, the Authorizer's store and configuration views)
// rather than on concrete types, so tests can drive them in-process.
// Errors leave this package as gRPC statuses whose messages a user can act
// on; Status and FromStatus translate between the package sentinels and
// codes. Retries between attempts (the proxy's relays) wait with
// internal/retry.
//
// api may import state, spec, ca, raft, proto and internal/* (and so,
// through spec's constraint parser, scheduler). It must not import
// orchestrator, manager, node or agent: those are above it, or beside it
// and reached through the store.
package api
