// Package worker runs the tasks the dispatcher assigns to this node.
//
// Each assigned task gets a goroutine (a runner) that drives the task's
// exec.Controller through ACCEPTED, PREPARING, STARTING and RUNNING, then
// reports how the container ended (COMPLETE, FAILED), why it could not run
// (REJECTED), or that it was stopped on request (SHUTDOWN). Reported states
// never move backwards; failed reports are retried with capped backoff and
// only the latest pending status of a task is kept.
//
// A Worker can be closed without touching containers, and a new Worker on
// the same executor adopts them on its first Assign: running containers are
// reported RUNNING and waited on rather than restarted, containers that
// exited meanwhile are reported as such, and containers of tasks no longer
// assigned are removed.
package worker
