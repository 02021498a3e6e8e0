// Package mesh is the routing mesh of a raftswarm node: the ingress side of
// published ports.
//
// # What it owns
//
// Every node listens on every published port of every service (on its
// --ingress-addr, all addresses by default) and forwards each incoming TCP
// connection or UDP flow to a running task of that service, on this node or
// any other. The package owns exactly that data path:
//
//   - binding and unbinding the published ports (tcp and udp) as the endpoint
//     table changes, reporting ports that cannot be bound and retrying them on
//     the next Update;
//   - choosing a backend per connection/flow (round robin), skipping backends
//     that refuse or time out;
//   - copying bytes both ways, with half-close, and tearing everything down
//     on Close.
//
// It does not own the endpoint table: the managers compute it (one entry per
// published port, listing host_ip:host_port of every running task, as
// published by Docker on the task's own node) and the node agent watches it
// and hands every full table to Mesh.Update. Nor does it publish task ports in
// Docker; that is the executor's job.
//
// # Why a userspace proxy
//
// Docker's swarm mode implements the routing mesh in the kernel: an "ingress"
// overlay network (VXLAN) joins all nodes, iptables DNAT rules send published
// ports into an ingress sandbox namespace, and IPVS load-balances there onto
// the tasks' overlay addresses. That needs an overlay network, kernel modules,
// root and network namespaces, and its rules are global to a network
// namespace, so several nodes cannot share one host.
//
// raftswarm has no overlay network: a task is reachable only at the
// host_ip:host_port Docker published on its own node. A userspace proxy that
// dials those addresses works across hosts with nothing but plain IP
// reachability between nodes, needs no privileges beyond binding the ports,
// and lets several nodes run on one host, each bound to its own 127.0.0.x
// ingress address (as the tests and the demo do).
//
// The trade-off against IPVS/iptables (which the kernel path below
// removes for the connections it takes): every byte crosses user space (io.Copy
// between two *net.TCPConn uses splice(2) on Linux, so it is not copied
// through Go buffers, but it still costs syscalls and a context switch per
// chunk), each proxied connection holds two sockets and two goroutines, and
// connection setup costs an extra dial (see BenchmarkTCPProxy vs
// BenchmarkTCPDirect). Backends see the mesh node as the client address, not
// the real client (Docker's ingress mode SNATs too, so that is no worse).
// Load balancing decisions are per node: each node round-robins its own
// connections with no shared state.
//
// # The kernel path
//
// Where the daemon may (root or CAP_NET_ADMIN, nft, nf_tables with NAT),
// UseKernel adds a second data path under the first, as kube-proxy's
// nftables mode and Docker's IPVS ingress do: every Update (and SetLocal,
// which names this node's tasks' container addresses) derives from the same
// endpoint table a whole nftables table of the node (NFTForwarder, one
// transaction per change; rules equal to the last ones applied run no nft
// at all) that DNATs new TCP connections to the ingress address and a
// published port, one task chosen at random per connection.
// Only tasks on this host are forwarded in the kernel: this node's own
// straight to the container (so they see the client's address), other
// same-host nodes' to the port Docker published there. A task on another
// host is a slot the kernel lets through ("accept") to the userspace
// listener, which stays bound on every published port for that, for the
// ports the kernel does not take (UDP, PROXY protocol) and for everything
// if the rules fail (a failed transaction leaves the rules before it in
// place, so the mesh then removes them: otherwise they would go on taking
// new connections, perhaps to tasks that have left, while the node reports
// the userspace path; KernelRetry then tells the caller to Update again,
// which the agent does every 3 s). Forwarding across hosts in the kernel
// is left out on purpose: it needs ip_forward, a FORWARD chain that
// accepts (Docker sets its policy to DROP) and masquerading, which hides
// the client address anyway.
//
// A container on the node's bridge that connects to the node's address
// and a published port is DNATed to a container on the same bridge: the
// reply crosses the bridge without routing, and is translated back only
// because Docker turns on bridge-nf-call-iptables (checked by hand on
// 2026-11-29: the task saw the calling container's address). A task
// calling its own published port through the node's address would need
// hairpin mode on its bridge port (the packet goes back out the port it
// came in), which Docker sets only without its userland proxy: with it
// the connection hung (checked by hand on 2026-11-29). So a connection
// from the task's own container address is DNATed to the published
// address instead, where Docker's proxy takes it (the task then sees the
// bridge gateway as the client, as from Docker's own hairpin path).
//
// Draining is conntrack's: only the first packet of a connection crosses
// the nat chains, so established connections keep their backend after it
// leaves the table, and even after the table is removed. Close removes the
// table; UseKernel removes a table a killed daemon left before taking over.
//
// Connections forwarded in the kernel never reach the proxy's counters, so
// every DNAT rule counts in a named counter of its port (conns_<port>);
// its packets are connections, as only first packets cross nat chains. A
// re-apply flushes and rebuilds the chains inside the table rather than
// deleting it, so the counters keep counting through every change (and
// through a port unpublished and published again), until Close. Stats
// reads them (ConnCounter: one `nft -j list counters` run, at most once a
// second, never under the lock held across nft runs) and reports them
// beside the userspace figures; the node's metrics tell the two apart
// with a path label. The kernel counts no bytes. A connection whose first
// packet is dropped on the host before conntrack confirms it counts once
// per retransmitted SYN (seen with the hang of the hairpin case below,
// before its fix).
//
// Why the nft CLI rather than netlink (github.com/google/nftables): the
// rule set is small and always rewritten whole, a text transaction is
// atomic, errors name the failing line, `nft list table` shows exactly
// what was written, and netplane writes the node's other table the same
// way. A daemon that changes its table a few times per second at most does
// not need to save the fork.
//
// # What it must not import
//
// mesh imports proto and internal/retry (transient accept errors back off
// through it) only: never the agent, node, manager, api or state packages.
// It learns the endpoint table through Update and nothing else.
package mesh
