package fake

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// FirstHostPort is the first host port the fake engine hands out to
// published ports (ingress mode, or host mode without a published port);
// each container port gets the next one, in creation order.
const FirstHostPort = 30000

// FakeHostIP is the host address of every fake port binding: the wildcard,
// as Docker reports a port published on every address, which the leader
// reads as the node's own address (a specific address must be the node's
// own, and the fake does not know it).
const FakeHostIP = "0.0.0.0"

var (
	_ exec.PortReporter   = (*controller)(nil)
	_ exec.HealthReporter = (*controller)(nil)
)

// allocPorts gives the task's spec ports their bindings; the caller holds
// e.mu.
func (e *Executor) allocPorts(t *swarmpb.Task) []*swarmpb.PortBinding {
	var out []*swarmpb.PortBinding
	for _, p := range t.GetSpec().GetPorts() {
		if p.GetTargetPort() == 0 {
			continue
		}
		b := &swarmpb.PortBinding{
			Protocol:    exec.PortProtocol(p),
			TargetPort:  p.GetTargetPort(),
			HostIp:      FakeHostIP,
			PublishMode: exec.PublishModeIngress,
		}
		if exec.IsHostMode(p) {
			b.PublishMode = exec.PublishModeHost
			b.HostPort = p.GetPublishedPort()
		}
		if b.HostPort == 0 {
			if e.nextPort < FirstHostPort {
				e.nextPort = FirstHostPort - 1
			}
			e.nextPort++
			b.HostPort = e.nextPort
		}
		out = append(out, b)
	}
	return out
}

// SetHealth sets what Health reports for the task's container: "" (no
// healthcheck, the default), exec.HealthStarting, exec.HealthHealthy or
// exec.HealthUnhealthy. It may be set before the task exists.
func (e *Executor) SetHealth(taskID, status string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.health == nil {
		e.health = make(map[string]string)
	}
	if status == "" {
		delete(e.health, taskID)
		return
	}
	e.health[taskID] = status
}

// Ports reports the container's fake bindings (host_ip 127.0.0.1, host
// ports from FirstHostPort on) while it runs, like Docker.
func (c *controller) Ports(ctx context.Context) ([]*swarmpb.PortBinding, error) {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	ct, err := c.get()
	if err != nil {
		return nil, err
	}
	if !ct.info.Running {
		return nil, nil
	}
	out := make([]*swarmpb.PortBinding, len(ct.ports))
	for i, b := range ct.ports {
		out[i] = proto.Clone(b).(*swarmpb.PortBinding)
	}
	return out, nil
}

// Health reports the status set with SetHealth.
func (c *controller) Health(ctx context.Context) (string, error) {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := c.check(ctx); err != nil {
		return "", err
	}
	if _, ok := e.byTask[c.task.GetId()]; !ok {
		return "", fmt.Errorf("fake: no container for task %s", c.task.GetId())
	}
	if e.checks == nil {
		e.checks = make(map[string]int)
	}
	e.checks[c.task.GetId()]++
	return e.health[c.task.GetId()], nil
}

// HealthChecks returns how often Health was called for the task.
func (e *Executor) HealthChecks(taskID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.checks[taskID]
}
