// Package chaos is raftswarm's chaos bed: it runs the built managerd and
// workerd as real hosts, each in its own network namespace with its own
// address on a private bridge (10.213.x.0/24, inside namespaces only: the
// bridge lives in a hub namespace, so nothing is added to the root
// namespace and no packet leaves the bed). Daemons run without a container
// engine: nodes join and heartbeat but run no tasks, so the bed tests the
// control plane.
//
// While clients drive the Control API of every manager concurrently over
// the daemons' unix sockets (writes and reads of node labels and of a
// label of service specs, every call recorded with its start, end, input
// and output or error), a seeded schedule injects faults: one node cut
// from the rest, the leader cut from the majority, one-way drops, two
// halves, random packet loss (nftables inside the namespaces), kill -9 and
// restart, SIGSTOP/SIGCONT pauses. After every fault the bed heals and
// waits for one leader and every node Ready, timing the convergence.
//
// Checked after every run: the history is linearizable (porcupine, one
// register per key; timeouts, lost connections and lost leadership are
// ambiguous writes that may or may not have taken effect); no acknowledged
// write is lost (final reads after healing); a manager on the minority side
// of a partition refuses a read and a write with the quorum error within
// 10 s; after healing there is one leader and every node is Ready.
//
// Not covered: tc netem delay (not every kernel has sch_netem; loss uses
// nft numgen instead), clock jumps, full disks and crashes in the middle
// of a snapshot.
//
// Plain `go test ./chaos/` makes one short run (fixed seed, 3 managers and
// 1 worker, the leader partitioned, then kill -9); it skips unless root
// with ip and nft. `make chaos DURATION=5m` makes randomized runs for that
// long; each prints its seed and -chaos.seed replays its schedule.
package chaos
