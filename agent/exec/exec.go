package exec

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Labels put on every container. The node label is what lets several agents
// share one engine (tests, simulations) without touching each other's
// containers; the task label is what adoption keys on.
const (
	LabelNodeID      = "raftswarm.node.id"
	LabelServiceID   = "raftswarm.service.id"
	LabelServiceName = "raftswarm.service.name"
	LabelTaskID      = "raftswarm.task.id"
	LabelTaskSlot    = "raftswarm.task.slot"
)

// Environment variables set in every container in addition to the spec's.
const (
	EnvTaskID      = "TASK_ID"
	EnvNodeID      = "NODE_ID"
	EnvServiceName = "SERVICE_NAME"
)

// Container states as reported in ContainerInfo.State (Docker's vocabulary).
const (
	StateCreated = "created"
	StateRunning = "running"
	StateExited  = "exited"
	StateDead    = "dead"
)

// DefaultStopGracePeriodNs is used when a task's spec leaves the stop grace
// period at zero, matching Docker swarm's default.
const DefaultStopGracePeriodNs int64 = 10e9

// ErrNoContainerSpec is returned by Prepare for a task without a container
// spec (for example the stub tasks used to clean up orphaned containers).
var ErrNoContainerSpec = errors.New("exec: task has no container spec")

// Controller runs one task's container. Every method takes a context so the
// worker can abandon a step when the task is shut down or the agent stops.
//
// Methods other than Prepare locate the container by name and task label,
// so a controller made for a task whose container already exists (an agent
// restart) can Wait, Shutdown or Remove it without calling Prepare first.
type Controller interface {
	// Prepare makes sure the image is present (pulling it if absent) and
	// creates the container. An existing container of the same task is
	// reused. An error here means the task cannot run on this node
	// (REJECTED); it carries the engine's message.
	Prepare(ctx context.Context) error
	// Start starts the container; starting a running container is a no-op.
	Start(ctx context.Context) error
	// Wait blocks until the container is not running and returns its exit
	// code. It returns at once for a container that has already exited.
	Wait(ctx context.Context) (exitCode int, err error)
	// Shutdown stops the container, giving it the task's stop grace period
	// (DefaultStopGracePeriodNs when unset). A missing or stopped container
	// is not an error.
	Shutdown(ctx context.Context) error
	// Remove deletes the container. A missing container is not an error.
	Remove(ctx context.Context) error
}

// ContainerInfo describes one container owned by the node.
type ContainerInfo struct {
	ID          string
	Name        string
	TaskID      string
	ServiceID   string
	ServiceName string
	Slot        uint64
	// State is the engine's container state: StateCreated, StateRunning,
	// StateExited, StateDead, or another engine-specific value.
	State    string
	Running  bool
	ExitCode int // meaningful only when the container has exited
}

// Executor is the node's container engine as the worker sees it.
type Executor interface {
	// Describe reports the node's platform and resources. An unreachable
	// engine yields an error, which the caller reports as
	// NodeDescription.EngineError.
	Describe(ctx context.Context) (*swarmpb.NodeDescription, error)
	// Controller returns a controller for the task. It must accept a task
	// carrying only Id, ServiceId, ServiceName and Slot (no spec): the
	// worker builds such stubs from ContainerInfo to remove containers of
	// tasks it no longer has.
	Controller(t *swarmpb.Task) (Controller, error)
	// Containers lists the containers this node owns (label
	// LabelNodeID == node ID), running or not, so a restarted agent can
	// adopt them.
	Containers(ctx context.Context) ([]ContainerInfo, error)
}

// TaskContainerLister is implemented by executors that can find the
// containers of given tasks without listing the whole node. Adopting newly
// assigned tasks needs only theirs: a session message usually brings one
// new task, and listing (and, with the worker, indexing) every container
// of a node running hundreds of tasks for it made the agent's CPU grow
// with the square of its tasks while a service scaled up.
type TaskContainerLister interface {
	// TaskContainers reports the node's containers (as Containers would)
	// whose task is one of taskIDs, in no particular order.
	TaskContainers(ctx context.Context, taskIDs []string) ([]ContainerInfo, error)
}

// IsGlobal reports whether the task belongs to a global service. Slot 0 is
// treated as global too, so stub tasks rebuilt from container labels map to
// the same container name.
func IsGlobal(t *swarmpb.Task) bool {
	return t.GetSpec().GetMode() == swarmpb.ServiceMode_SERVICE_MODE_GLOBAL || t.GetSlot() == 0
}

// ContainerName is the container name for a task on a node:
// <service>.<slot>.<taskID>, or <service>.<nodeID>.<taskID> for global
// services (they have no slot; the node identifies the instance).
func ContainerName(t *swarmpb.Task, nodeID string) string {
	instance := strconv.FormatUint(t.GetSlot(), 10)
	if IsGlobal(t) {
		instance = nodeID
	}
	return serviceName(t) + "." + instance + "." + t.GetId()
}

func serviceName(t *swarmpb.Task) string {
	if n := t.GetServiceName(); n != "" {
		return n
	}
	if n := t.GetSpec().GetName(); n != "" {
		return n
	}
	return t.GetServiceId()
}

// ContainerLabels returns the labels for a task's container: the spec's
// container labels, overridden by the raftswarm ones (ownership must not be
// spoofable from a service spec).
func ContainerLabels(t *swarmpb.Task, nodeID string) map[string]string {
	labels := make(map[string]string, len(t.GetSpec().GetContainer().GetLabels())+5)
	for k, v := range t.GetSpec().GetContainer().GetLabels() {
		labels[k] = v
	}
	labels[LabelNodeID] = nodeID
	labels[LabelServiceID] = t.GetServiceId()
	labels[LabelServiceName] = serviceName(t)
	labels[LabelTaskID] = t.GetId()
	labels[LabelTaskSlot] = strconv.FormatUint(t.GetSlot(), 10)
	return labels
}

// ContainerEnv returns the spec's environment followed by TASK_ID, NODE_ID
// and SERVICE_NAME. Ours come last because engines let the last duplicate
// win, and these identify the task.
func ContainerEnv(t *swarmpb.Task, nodeID string) []string {
	spec := t.GetSpec().GetContainer().GetEnv()
	env := make([]string, 0, len(spec)+3)
	env = append(env, spec...)
	return append(env,
		EnvTaskID+"="+t.GetId(),
		EnvNodeID+"="+nodeID,
		EnvServiceName+"="+serviceName(t),
	)
}

// StopGracePeriodNs returns the task's stop grace period, defaulted.
func StopGracePeriodNs(t *swarmpb.Task) int64 {
	if g := t.GetSpec().GetContainer().GetStopGracePeriodNs(); g > 0 {
		return g
	}
	return DefaultStopGracePeriodNs
}

// InfoFromLabels fills the task fields of a ContainerInfo from labels.
func InfoFromLabels(info *ContainerInfo, labels map[string]string) {
	info.TaskID = labels[LabelTaskID]
	info.ServiceID = labels[LabelServiceID]
	info.ServiceName = labels[LabelServiceName]
	info.Slot, _ = strconv.ParseUint(labels[LabelTaskSlot], 10, 64)
}

// StubTask rebuilds a minimal task from a container's info, enough for
// Executor.Controller to find the container again (names and labels).
func StubTask(info ContainerInfo) *swarmpb.Task {
	return &swarmpb.Task{
		Id:          info.TaskID,
		ServiceId:   info.ServiceID,
		ServiceName: info.ServiceName,
		Slot:        info.Slot,
	}
}

// ContainerIdentifier is implemented by controllers that know their
// container's engine ID once it exists (after Prepare, or after any step on
// an adopted container). The worker puts it in TaskStatus.ContainerId.
type ContainerIdentifier interface {
	ContainerID() string
}

// Publish modes of PortConfig.PublishMode and PortBinding.PublishMode. An
// empty mode means ingress, as in Docker swarm.
const (
	PublishModeIngress = "ingress"
	PublishModeHost    = "host"
)

// PortReporter is implemented by controllers whose container publishes the
// task's ports on the node. Ports reports where each published target port
// is reachable (as the engine reports it: a HostIp of "" or 0.0.0.0 means
// every address of the node, and the leader substitutes the node's
// address). A task without ports, or whose container is not running,
// yields no bindings. The worker puts them in TaskStatus.Ports with
// RUNNING; the leader builds the routing mesh's endpoints from them.
type PortReporter interface {
	Ports(ctx context.Context) ([]*swarmpb.PortBinding, error)
}

// Health statuses reported by HealthReporter (Docker's vocabulary; "" when
// the container has no healthcheck).
const (
	HealthNone      = ""
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// HealthReporter is implemented by controllers that know their container's
// health: HealthNone when it has no healthcheck (none in the spec nor the
// image, or the spec disabled it), else HealthStarting, HealthHealthy or
// HealthUnhealthy.
type HealthReporter interface {
	Health(ctx context.Context) (string, error)
}

// PortProtocol returns the port's protocol, lower-cased, "tcp" when unset.
func PortProtocol(p *swarmpb.PortConfig) string {
	if p.GetProtocol() == "" {
		return "tcp"
	}
	return strings.ToLower(p.GetProtocol())
}

// IsHostMode reports whether the port is published in host mode (else it
// is ingress, the default).
func IsHostMode(p *swarmpb.PortConfig) bool {
	return strings.EqualFold(p.GetPublishMode(), PublishModeHost)
}

// PublishesIngress reports whether the task's spec publishes any port in
// ingress mode, i.e. whether the routing mesh of every node may send it
// connections.
func PublishesIngress(t *swarmpb.Task) bool {
	for _, p := range t.GetSpec().GetPorts() {
		if p.GetTargetPort() != 0 && !IsHostMode(p) {
			return true
		}
	}
	return false
}

// LogOptions select what LogReader.Logs reads.
type LogOptions struct {
	// Follow keeps reading new lines until ctx ends (or the engine ends the
	// stream, as Docker does when the container stops).
	Follow bool
	// Tail is how many of the existing lines to read first, from the end;
	// negative means all.
	Tail int64
	// Timestamps asks for the engine's timestamps. Readers may fill
	// LogLine.Timestamp regardless; the client decides what to show.
	Timestamps bool
}

// LogReader is implemented by executors that can read a task's container
// logs. It is optional: an executor without it makes the agent answer log
// subscriptions with an error instead of lines.
type LogReader interface {
	// Logs calls emit once per line (Data keeps its trailing newline, if
	// any; Stream is "stdout" or "stderr"), in order, from the calling
	// goroutine. It returns emit's error, ctx's, or the engine's; nil when
	// the lines ran out (without Follow) or the engine ended the stream.
	Logs(ctx context.Context, t *swarmpb.Task, opts LogOptions, emit func(*swarmpb.LogLine) error) error
}

// PublishedTarget is one TCP port a running task container publishes on
// this node: the host port, and the container address and target port the
// engine forwards it to.
type PublishedTarget struct {
	TaskID   string
	HostPort uint32
	Target   netip.AddrPort
}

// PublishedTargetLister is implemented by executors that can tell where
// their containers' published ports lead (the docker executor). The
// routing mesh's kernel path sends clients there directly, so the task
// sees the client's address.
type PublishedTargetLister interface {
	PublishedTargets(ctx context.Context) ([]PublishedTarget, error)
}
