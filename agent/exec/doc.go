// Package exec defines how an agent runs the containers of its tasks.
//
// An Executor describes the node's container engine, lists the containers
// the node owns and hands out one Controller per task. A Controller walks a
// single container through its lifecycle (Prepare, Start, Wait, Shutdown,
// Remove); the worker package decides when to call each step and what task
// state to report.
//
// Implementations live in sub-packages: docker (a real Docker Engine) and
// fake (in memory, for tests and simulations). Both name and label
// containers with the helpers of this package so that they agree on how a
// container is tied back to its task.
package exec
