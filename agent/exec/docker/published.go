package docker

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/raftswarm/raftswarm/agent/exec"
)

var _ exec.PublishedTargetLister = (*Executor)(nil)

// PublishedTargets lists, for this node's running task containers, each
// published TCP port and the container address:target port the engine
// forwards it to, from one container list. The address is the one on the
// container's primary network (its network mode), which is where the
// engine's own port forwarding leads, else on the first network that gave
// it one.
func (e *Executor) PublishedTargets(ctx context.Context) ([]exec.PublishedTarget, error) {
	list, err := e.engine.ContainerList(ctx, container.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", exec.LabelNodeID+"="+e.nodeID)),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []exec.PublishedTarget
	for _, c := range list {
		taskID := c.Labels[exec.LabelTaskID]
		if c.Labels[exec.LabelNodeID] != e.nodeID || taskID == "" || c.State != container.StateRunning {
			continue
		}
		ip := summaryIP(c)
		if !ip.IsValid() {
			continue
		}
		for _, p := range c.Ports {
			if p.Type != "tcp" || p.PublicPort == 0 || p.PrivatePort == 0 {
				continue
			}
			out = append(out, exec.PublishedTarget{TaskID: taskID, HostPort: uint32(p.PublicPort), Target: netip.AddrPortFrom(ip, p.PrivatePort)})
		}
	}
	return out, nil
}

// summaryIP is the container's IPv4 address in a list entry: on its
// primary network, else the first (by name) that has one.
func summaryIP(c container.Summary) netip.Addr {
	if c.NetworkSettings == nil {
		return netip.Addr{}
	}
	nets := c.NetworkSettings.Networks
	mode := c.HostConfig.NetworkMode
	if mode == "default" || mode == "" {
		mode = "bridge"
	}
	parse := func(s string) netip.Addr {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Unmap().Is4() {
			return netip.Addr{}
		}
		return a.Unmap()
	}
	if ep := nets[mode]; ep != nil {
		if a := parse(ep.IPAddress); a.IsValid() {
			return a
		}
	}
	var best string
	var addr netip.Addr
	for name, ep := range nets {
		if ep == nil {
			continue
		}
		if a := parse(ep.IPAddress); a.IsValid() && (best == "" || name < best) {
			best, addr = name, a
		}
	}
	return addr
}
