// Package docker implements exec.Executor on a Docker Engine.
//
// Containers are named <service>.<slot>.<taskID> (global services:
// <service>.<nodeID>.<taskID>) and labelled with the raftswarm node,
// service and task, so that a restarted agent finds and adopts them and
// several agents can share one engine: an Executor only ever touches
// containers labelled with its own node ID.
//
// Docker's own restart policy is disabled ("no"): restarting failed tasks is
// the orchestrator's decision. Published ports are not mapped here; the
// routing mesh handles them.
//
// All engine calls go through the Engine interface so a stub can stand in
// for the real client.
package docker
