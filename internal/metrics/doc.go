// Package metrics owns a daemon's Prometheus registry and the HTTP server
// of its metrics address (--metrics-addr): /metrics, /healthz, /readyz and,
// with --debug, /debug/pprof/.
//
// One Registry per daemon, passed in, never the global default registry:
// test clusters run several daemons in one process, and each scrapes as
// its own. The one exception is Raft's: hashicorp/raft reports through
// hashicorp/go-metrics' process-wide global sink, which carries no node
// identity. The first Registry created installs one Prometheus sink as that
// global (once per process) and every Registry gathers from it, so the
// raftswarm_raft_* series of hashicorp/raft are process totals: exact for
// a daemon (one node per process), summed over the nodes of an in-process
// test cluster. The per-node Raft figures that matter to an operator
// (state, term, indexes, last contact, leader changes) are also exported
// per node, from the node's own Raft handle, under raftswarm_raft_node_*.
//
// Collectors that need the store, the dispatcher or the data plane live
// in the packages that own those (manager, node) and read current state at
// scrape time, so hot paths pay nothing; this package imports no other
// raftswarm package.
package metrics
