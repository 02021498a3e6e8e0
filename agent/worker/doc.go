// Package worker runs the tasks the dispatcher assigns to this node.
//
// Each assigned task gets a goroutine (a runner) that drives the task's
// exec.Controller through ACCEPTED, PREPARING, STARTING and RUNNING, then
// reports how the container ended (COMPLETE, FAILED), why it could not run
// (REJECTED), or that it was stopped on request (SHUTDOWN). Reported states
// never move backwards; failed reports are retried with capped backoff and
// only the latest pending status of a task is kept.
//
// RUNNING carries the container's published ports (TaskStatus.Ports), from
// which the leader builds the routing mesh's endpoints. A container with a
// healthcheck stays STARTING until it is healthy, and is stopped and
// reported FAILED once unhealthy. A running task whose spec publishes
// ingress-mode ports is stopped only after a drain delay (WithDrainDelay),
// so that the routing meshes stop sending it connections first.
//
// A Worker can be closed without touching containers, and a new Worker on
// the same executor adopts them on its first Assign: running containers are
// reported RUNNING and waited on rather than restarted, containers that
// exited meanwhile are reported as such, and containers of tasks no longer
// assigned are removed.
//
// Every wait between attempts goes through internal/retry (one Backoff per
// retried operation, from WithBackoff's minimum to its maximum).
//
// worker imports proto, agent/exec and internal helpers only; it must not
// import the agent, node, manager, api, state or raft packages: it learns
// its tasks through Assign/Update and reports through the StatusReporter
// its owner passes in.
package worker
