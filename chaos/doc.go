// Package chaos is raftswarm's chaos bed: it runs the built managerd and
// workerd as real hosts, each in its own network namespace with its own
// address on a private bridge (10.213.x.0/24, inside namespaces only: the
// bridge lives in a hub namespace, so nothing is added to the root
// namespace and no packet leaves the bed).
//
// Daemons run tasks in the in-memory fake engine: the bed starts them with
// the hidden, test-only flag `--engine fake` (agent/exec/fake: tasks are
// placed, started and reported like real ones, no container runs). The bed
// creates two replicated services of two replicas, each publishing a port
// through the routing mesh, and scales them (1-4 replicas, read-modify-write
// with the service version) every 2 s while each fault holds.
//
// While clients drive the Control API of every manager concurrently over
// the daemons' unix sockets (writes and reads of node labels and of a
// label of service specs, every call recorded with its start, end, input
// and output or error), a seeded schedule injects faults: one node cut
// from the rest, the leader cut from the majority, one-way drops, two
// halves, random packet loss (nftables inside the namespaces), kill -9 and
// restart, SIGSTOP/SIGCONT pauses, and clock jumps: one node's wall clock
// (internal/clock, through the test hook RAFTSWARM_TEST_CLOCK_FILE the bed
// sets on every daemon) jumps 2-9 minutes forward or back, and back after
// the hold. After every fault the bed heals and waits for one leader and
// every node Ready, then for the tasks and routing tables (below), timing
// both from the heal.
//
// Checked after every run: the history is linearizable (porcupine, one
// register per key; timeouts, lost connections and lost leadership are
// ambiguous writes that may or may not have taken effect); no acknowledged
// write is lost (final reads after healing); a manager on the minority side
// of a partition refuses a read and a write with the quorum error within
// 10 s; no node is seen Down (or a manager unreachable) while a clock is
// off. Checked after every heal: one leader and every node Ready; per
// service, exactly spec.replicas tasks running and no other meant to run,
// no two meant to run in one slot, none on a node that is gone or of a
// service that is gone; every node's engine runs exactly the tasks the
// leader has running there (Local.Info engine_running_tasks: no duplicate
// left behind by a partition, no orphan); every node's routing table (the
// published ports its agent last applied from the Endpoints stream,
// Local.Info routing_table) has exactly the leader's running tasks as
// backends.
//
// Not covered here: tc netem delay (this kernel has no sch_netem; loss uses
// nft numgen instead), full disks and crashes in the middle of a snapshot
// (see raft's corruption tests). hashicorp/raft stamps log entries
// (AppendedAt) with the real clock: the clock hook does not move them.
//
// Plain `go test ./chaos/` makes one short run (fixed seed, 3 managers and
// 1 worker, the leader partitioned, then kill -9; about 35 s); it skips
// unless root with ip and nft. `make chaos DURATION=5m FAULTS=5` makes
// randomized runs of FAULTS faults each for that long; each prints its
// seed and -chaos.seed replays its schedule (with the same -chaos.faults
// and -chaos.kinds, on the same commit: adding a kind changes schedules).
// -chaos.kinds=clock-jump,kill9 draws from those kinds only.
package chaos
