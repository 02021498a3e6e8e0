// Package agent is what runs on every node of a cluster, manager or
// worker, once it has joined: the heartbeats to the leader, the task
// session that feeds the node's worker (agent/worker) and the worker's
// status reports back to the leader, the routing mesh's endpoint stream and
// the mesh it drives (package mesh), the engine description the heartbeats
// carry, and the log subscriptions the leader sends and their publishing.
//
// The agent keeps the node's one list of managers and its guess at the
// leader (leaderTracker): the heartbeats move it along and every stream
// follows it. A leader that does not answer (connection refused, reset)
// is left for the next manager; one that is only slow (a heartbeat timed
// out on a live connection) is not: the heartbeat loop asks another
// manager who leads (stillLeads) and moves the node only if that names
// another leader, so a loaded leader does not send 1,000 nodes' streams to
// a follower and back. The heartbeat period counts from each call's start,
// as the leader's deadline does. What it needs from the node it asks through small interfaces
// defined here: a ConnSource for connections to managers (the node's
// internal/dial pool), a RoleReconciler that acts on the role the cluster
// wants (promotion, demotion and certificate renewal are the node's), and a
// ManagerRecorder that keeps the manager list across restarts. Role changes
// run on a goroutine of the agent's own, one at a time, never inside the
// heartbeat loop, so a node being promoted keeps heartbeating. Every wait
// between attempts uses internal/retry.
//
// When the executor's engine has bridge networks (netplane.Bridges: the
// docker executor), the agent also runs the node's service-discovery data
// plane (netplane.go): kernel rules from netplane.NewNFTRules (when nft is
// unusable, tasks on networks are rejected with the reason), the data
// path's mutual TLS and port from the node, every view of the Endpoints
// stream handed to it, its per-network report and data port in the
// heartbeats, and its Attach given to the executor for task containers.
//
// agent may import proto, spec, mesh, netplane, agent/worker, agent/exec and
// internal packages. It must not import node, manager, api (the managers'
// server side: the wire values it shares with the dispatcher are copied here
// and checked by node's tests), orchestrator, scheduler, raft or state.
package agent
