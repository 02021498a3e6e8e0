// Package netplane is a node's service-discovery data plane (issue 10): it
// makes a task reach another service by its name, wherever that service's
// tasks run. docs/discovery.md has the design and its reasons; this is what
// the package owns.
//
// # What it owns
//
// For every cluster network the node has tasks on, the Plane keeps:
//
//   - a bridge network in the node's container engine (through Bridges,
//     implemented by agent/exec/docker), named for the node so that nodes
//     sharing one engine never clash; created by Attach when the first task
//     arrives, removed when the network leaves the view and no container is
//     left on it, adopted by label after a daemon restart;
//   - the name table (table.go), rebuilt whole from each discovery view the
//     leader streams plus the node's own containers on its bridges: service
//     names and aliases -> virtual IPs, tasks.NAME -> one address per
//     running task (a local container's own address, or a node-local
//     address from the upper half of the network's subnet for a task on
//     another node), and every virtual address -> its backends;
//   - a DNS responder on the bridge gateway (dns.go), which containers use
//     through Docker's embedded resolver: it answers the names of the
//     networks of the container asking (found by its source address) with
//     TTL 0, and forwards every other name to the host's resolvers, with a
//     bounded wait and SERVFAIL on failure;
//   - a TCP proxy on the gateway (proxy.go) that kernel rules (Rules, in
//     rules_nft.go) redirect connections for live virtual addresses to; it
//     reads the original destination and connects to the same port of a
//     backend, round robin, skipping failing ones: a local task over the
//     bridge, a remote one through a tunnel. Addresses without a running
//     task are redirected to a bound port that never listens, so clients
//     are refused at once.
//   - the tunnel (tunnel.go): every node serves its data port with mutual
//     TLS 1.3 over the node certificates of package ca. One TLS connection
//     per proxied connection, with session resumption; a length-prefixed
//     TunnelHeader asks for a task's port on a network (or an image), the
//     server authorizes it against the latest view (the caller has a task
//     on that network; the task is its own and on it) and dials the
//     container. The client checks the server is the node it meant.
//
// Reconciling (plane.go) is level-triggered: every view, and every few
// seconds, the Plane recomputes the table from scratch and hands the kernel
// the whole rule set in one transaction, as kube-proxy's nftables mode
// does, rather than patching state event by event.
//
// # Why this shape
//
// Docker swarm's answer (a VXLAN overlay per network, IPVS, the embedded
// DNS) needs the engine in swarm mode or an external key-value store, and a
// VXLAN port is global to a host, so nodes sharing one engine cannot each
// have one; it encrypts only on request. Consul/Nomad Connect authenticate
// and encrypt service traffic with certificates, which we keep, but put a
// sidecar proxy in every task, which issue 10 rules out. kube-proxy gives
// each service a virtual IP and programs every node to forward it, which we
// keep too, but relies on a flat pod network across hosts that we do not
// have: the tunnel between node daemons stands in for it. The data path is
// therefore in the node daemon: one bridge, one DNS responder and one proxy
// per node and network, no container per task, and nothing addressed to a
// virtual address ever leaves a host unencrypted.
//
// # Imports
//
// netplane sits beside mesh (internal/layers): it may import proto, ca,
// internal/* of lower layers, golang.org/x/sys and github.com/miekg/dns,
// and never agent, api, manager or node. The engine and the kernel are
// reached only through the Bridges, Rules and ImageSource interfaces of
// contract.go, so the package's tests need neither Docker nor root.
package netplane
