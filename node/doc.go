// Package node is the runtime shared by managerd and workerd: the daemon
// (flags, start-up, restart from node.json), the local unix socket (the
// Local service; Control calls on it are relayed to the leader), init /
// join / leave / force-new-cluster, and role changes. A node is inactive
// until init or join; then it always runs an agent (package agent:
// heartbeats, the task session, the mesh and log publishing) and, while its
// role is manager, a manager.Manager. Role changes happen live: the agent
// reports the role the cluster wants (agent.RoleReconciler), and a promoted
// worker renews its certificate and joins Raft, a demoted manager leaves
// Raft and keeps running as a worker. The node hands the agent its
// connection pool (agent.ConnSource) and records the manager list the agent
// learns (agent.ManagerRecorder); it never reaches into the agent's state.
//
// With --metrics-addr it serves the node's metrics registry
// (internal/metrics) and /readyz; its one collector (metrics.go) lives as
// long as the node and reads, at scrape time, the manager and agent that
// run then (Manager's store, Raft and dispatcher figures, agent.Stats), so
// promotions and demotions need no re-registration.
//
// node is the top of the stack below the mains: it may import every
// package but cmd/ and the tests' helpers; nothing but cmd/, bench/ and
// internal/testcluster imports it.
package node
