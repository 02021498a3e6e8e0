// Package docker implements exec.Executor on a Docker Engine.
//
// Containers are named <service>.<slot>.<taskID> (global services:
// <service>.<nodeID>.<taskID>) and labelled with the raftswarm node,
// service and task, so that a restarted agent finds and adopts them and
// several agents can share one engine: an Executor only ever touches
// containers labelled with its own node ID.
//
// Docker's own restart policy is disabled ("no"): restarting failed tasks is
// the orchestrator's decision.
//
// A task's published ports are published by Docker on the node's ingress
// IP (Options.IngressIP, "" = all addresses): an ingress-mode port on a
// host port Docker picks, which every node's routing mesh forwards the
// service's published port to; a host-mode port on its published port.
// Controllers report the actual bindings (exec.PortReporter) and the
// container's health (exec.HealthReporter), both read with an inspect.
//
// Images without a registry (imagefetch.go): a task whose spec pins an
// image ID (ContainerSpec.image_id) and whose image this engine lacks gets
// it from another node through the agent's exec.ImageFetcher, before any
// pull: the 'docker save' stream is rewritten on its way to ImageLoad so it
// can tag nothing, the loaded image must have exactly that ID (anything
// else loaded is deleted and the next node tried), then it is tagged with
// the spec's reference. The serving side is SaveImage (netplane's
// ImageSource), by exact ID only. Named volumes carry their driver, options
// and labels to the engine, which creates them with the container; tmpfs
// mounts their size; RemoveVolumes removes named volumes, retrying for a
// while those a stopping container still uses (volumes.go).
//
// All engine calls go through the Engine interface so a stub can stand in
// for the real client. Each call but the streaming ones (wait, logs, pull)
// has its own deadline (deadline.go): a hung engine fails the step with an
// error naming the call, which the worker reports as the task's Err.
// A pull has none (it lasts as long as the image is large) but fails with
// ErrPullStalled when the engine reports no progress for
// Options.PullStallTimeout (60 s by default; workerd/managerd
// --image-pull-stall-timeout).
//
// Cluster networks (networks.go): the executor implements netplane.Bridges
// with one bridge network per cluster network the node has tasks on, named
// "rs-<network>-<node id first 8>", labelled with the node and the network
// (so a restarted agent adopts them and nodes sharing an engine never touch
// each other's), its interface named from a hash of both, its subnet picked
// by the engine. A task with networks is created on the first engine network
// its attacher (SetNetworkAttacher: the data plane's Attach) names, with the
// gateways as DNS servers, and connected to the others before it starts;
// without an attacher such a task is rejected.
//
// docker imports agent/exec, netplane, proto and internal helpers; it must not import
// agent/worker or anything above it (agent, node, manager, api).
package docker
