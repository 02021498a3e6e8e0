// Package fake is an in-memory exec.Executor for tests and simulations.
//
// Its containers "run" until told to exit (Exit), are shut down, or were
// configured to exit as soon as they start (ExitOnStart). Prepare can be
// made to fail per image or per task, the engine can be made unreachable,
// and counters tell how many containers exist, run, or were started, so
// tests can assert that adoption neither duplicates nor restarts anything.
// Published ports get deterministic bindings (127.0.0.1, host ports from
// FirstHostPort on) and health is set per task (SetHealth).
// All methods are safe for concurrent use.
package fake
