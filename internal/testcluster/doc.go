// Package testcluster runs in-process clusters of real nodes (node.New, the
// code managerd and workerd run) over loopback mutual TLS, each member with
// an in-memory container engine (agent/exec/fake) unless Options.Docker.
// It is the one in-process cluster builder of the project:
//
//   - New serves tests: fast Raft timings, no fsync, every member on a
//     loopback address of its own, failures reported through testing.TB;
//   - Start serves the benchmark commands under bench/: many workers joined
//     in parallel, production timings and fsync when asked, a log file, and
//     errors returned rather than a test failed.
//
// WatchService follows one service's tasks through a store watch and
// records when a condition on their counts first holds.
//
// testcluster sits at the top of the layers with the mains: it may import
// any package, and only tests and bench/ may import it.
package testcluster
