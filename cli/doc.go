// Package cli implements swarmctl, the command-line client that talks to a
// raftswarm daemon (managerd or workerd) over its local unix socket.
//
// cli may import every package of the module except cmd and test harnesses;
// only cmd/swarmctl imports it.
package cli
