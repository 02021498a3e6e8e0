package docker

// Cluster networks on the engine: the executor implements netplane.Bridges
// (one bridge network per cluster network this node has tasks on, named
// and labelled for the node so that nodes sharing an engine never touch
// each other's) and attaches task containers to them.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/netplane"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// LabelNetworkID labels an engine network with the cluster network it
// serves; exec.LabelNodeID labels it with the node that owns it.
const LabelNetworkID = "raftswarm.network.id"

// bridgeNameOption names the bridge interface of a bridge network.
const bridgeNameOption = "com.docker.network.bridge.name"

// maxNetworkName bounds engine network names.
const maxNetworkName = 64

var _ netplane.Bridges = (*Executor)(nil)

// BridgeName is the engine network of cluster network networkID (named
// networkName) on node nodeID: "rs-<network name>-<network id first
// 6>-<node id first 8>", at most 64 characters (the network name part is
// truncated), characters the engine refuses replaced by '-'. The network
// ID part keeps a network removed and created again under the same name
// (a stack redeployed at once) from meeting the old one's engine network
// while that one still waits to be removed.
func BridgeName(nodeID, networkID, networkName string) string {
	node, netID := nodeID, networkID
	if len(node) > 8 {
		node = node[:8]
	}
	if len(netID) > 6 {
		netID = netID[:6]
	}
	var b strings.Builder
	for _, r := range networkName {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := b.String()
	suffix := "-" + node
	if netID != "" {
		suffix = "-" + netID + suffix
	}
	if room := maxNetworkName - len("rs-") - len(suffix); len(name) > room {
		name = name[:room]
	}
	return "rs-" + name + suffix
}

// BridgeInterface is the host interface of the bridge of cluster network
// networkID on node nodeID: "rs" + 12 hex digits of sha256(node + network),
// 14 characters (Linux allows 15).
func BridgeInterface(nodeID, networkID string) string {
	sum := sha256.Sum256([]byte(nodeID + networkID))
	return "rs" + hex.EncodeToString(sum[:])[:12]
}

// netState is the executor's network attachment hook.
type netState struct {
	mu     sync.Mutex
	attach func(context.Context, *swarmpb.Task) (netplane.Attachment, error)
}

// SetNetworkAttacher sets how the containers of tasks with networks join
// them (the node's data plane: netplane.Plane.Attach). Without one, such
// tasks are rejected. Call it before tasks run.
func (e *Executor) SetNetworkAttacher(attach func(context.Context, *swarmpb.Task) (netplane.Attachment, error)) {
	e.nets.mu.Lock()
	defer e.nets.mu.Unlock()
	e.nets.attach = attach
}

func (e *Executor) attacher() func(context.Context, *swarmpb.Task) (netplane.Attachment, error) {
	e.nets.mu.Lock()
	defer e.nets.mu.Unlock()
	return e.nets.attach
}

// EnsureBridge returns this node's engine network for the cluster network,
// adopting one a previous run created (by label) or creating it, with no
// subnet given so that the engine picks one free on this engine.
func (e *Executor) EnsureBridge(ctx context.Context, req netplane.BridgeRequest) (netplane.Bridge, error) {
	if req.NetworkID == "" {
		return netplane.Bridge{}, errors.New("ensure engine network: empty cluster network ID")
	}
	if b, ok, err := e.findBridge(ctx, req.NetworkID); err != nil || ok {
		return b, err
	}
	label := req.NetworkName
	if label == "" {
		label = req.NetworkID
	}
	name := BridgeName(e.nodeID, req.NetworkID, label)
	subnets, err := e.freeSubnets(ctx)
	if err != nil {
		return netplane.Bridge{}, err
	}
	// Nodes on different engines of one host see each other's bridges
	// only as host routes; start each node and network at its own place in
	// the pool so that two created at the same moment rarely pick the same.
	subnets = rotateSubnets(subnets, e.nodeID+"/"+req.NetworkID)
	for attempt := 0; ; attempt++ {
		opts := network.CreateOptions{
			Driver:   "bridge",
			Internal: req.Internal,
			Options:  map[string]string{bridgeNameOption: BridgeInterface(e.nodeID, req.NetworkID)},
			Labels:   map[string]string{exec.LabelNodeID: e.nodeID, LabelNetworkID: req.NetworkID},
		}
		if len(subnets) > 0 {
			opts.IPAM = ipamFor(subnets[0])
		}
		resp, err := e.engine.NetworkCreate(ctx, name, opts)
		if err != nil && len(subnets) > 0 && isPoolClash(err) {
			// Another node sharing the engine took this subnet meanwhile;
			// try the next (when none is left, the engine chooses).
			subnets = subnets[1:]
			attempt--
			continue
		}
		if err == nil {
			n, err := e.engine.NetworkInspect(ctx, resp.ID, network.InspectOptions{})
			if err != nil {
				return netplane.Bridge{}, fmt.Errorf("inspect engine network %s: %w", name, err)
			}
			b, err := e.bridgeOf(ctx, n)
			if err == nil && opts.IPAM != nil && len(subnets) > 0 && routedElsewhere(b.Subnet, b.Interface) {
				// A bridge of another engine on this host took the same
				// subnet meanwhile: give it up and take the next.
				if rerr := e.engine.NetworkRemove(ctx, resp.ID); rerr == nil {
					subnets = subnets[1:]
					attempt--
					continue
				}
			}
			return b, err
		}
		if !isNameConflict(err) || attempt > 0 {
			return netplane.Bridge{}, fmt.Errorf("create engine network %s for cluster network %s: %w", name, req.NetworkID, err)
		}
		// The name is taken: by a concurrent EnsureBridge (adopt it), or
		// by a stale network of ours for a cluster network since removed
		// and recreated under the same name (remove it and create ours).
		n, ierr := e.engine.NetworkInspect(ctx, name, network.InspectOptions{})
		if cerrdefs.IsNotFound(ierr) {
			continue // removed meanwhile
		}
		if ierr != nil {
			return netplane.Bridge{}, fmt.Errorf("create engine network %s: %w (and inspecting it: %v)", name, err, ierr)
		}
		if n.Labels[exec.LabelNodeID] != e.nodeID {
			return netplane.Bridge{}, fmt.Errorf("engine network name %s is taken by a network this node does not own; remove it ('docker network rm %s')", name, name)
		}
		if n.Labels[LabelNetworkID] == req.NetworkID {
			return e.bridgeOf(ctx, n)
		}
		if rerr := e.engine.NetworkRemove(ctx, n.ID); rerr != nil && !cerrdefs.IsNotFound(rerr) {
			return netplane.Bridge{}, fmt.Errorf("engine network %s is left from cluster network %s and cannot be removed: %w", name, n.Labels[LabelNetworkID], rerr)
		}
	}
}

// isNameConflict reports the engine's "network with name X already
// exists" (409 Conflict).
func isNameConflict(err error) bool {
	return cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "already exists")
}

// findBridge finds this node's engine network for a cluster network.
func (e *Executor) findBridge(ctx context.Context, networkID string) (netplane.Bridge, bool, error) {
	list, err := e.engine.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", exec.LabelNodeID+"="+e.nodeID),
		filters.Arg("label", LabelNetworkID+"="+networkID),
	)})
	if err != nil {
		return netplane.Bridge{}, false, fmt.Errorf("list engine networks: %w", err)
	}
	for _, n := range list {
		if n.Labels[exec.LabelNodeID] != e.nodeID || n.Labels[LabelNetworkID] != networkID {
			continue // an engine ignoring filters
		}
		b, err := e.bridgeOf(ctx, n)
		return b, err == nil, err
	}
	return netplane.Bridge{}, false, nil
}

// ListBridges lists the engine networks this node owns.
func (e *Executor) ListBridges(ctx context.Context) ([]netplane.Bridge, error) {
	list, err := e.engine.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", exec.LabelNodeID+"="+e.nodeID),
	)})
	if err != nil {
		return nil, fmt.Errorf("list engine networks: %w", err)
	}
	var out []netplane.Bridge
	for _, n := range list {
		if n.Labels[exec.LabelNodeID] != e.nodeID || n.Labels[LabelNetworkID] == "" {
			continue
		}
		b, err := e.bridgeOf(ctx, n)
		if cerrdefs.IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DockerName < out[j].DockerName })
	return out, nil
}

// bridgeOf describes an engine network; a listed one without its IPAM
// configuration is inspected.
func (e *Executor) bridgeOf(ctx context.Context, n network.Inspect) (netplane.Bridge, error) {
	b, ok := bridgeFromInspect(n)
	if ok {
		return b, nil
	}
	full, err := e.engine.NetworkInspect(ctx, n.ID, network.InspectOptions{})
	if err != nil {
		return netplane.Bridge{}, fmt.Errorf("inspect engine network %s: %w", n.Name, err)
	}
	if b, ok = bridgeFromInspect(full); !ok {
		return netplane.Bridge{}, fmt.Errorf("engine network %s has no IPv4 subnet; remove it ('docker network rm %s') so it is created again", n.Name, n.Name)
	}
	return b, nil
}

func bridgeFromInspect(n network.Inspect) (netplane.Bridge, bool) {
	b := netplane.Bridge{NetworkID: n.Labels[LabelNetworkID], DockerName: n.Name, Interface: n.Options[bridgeNameOption]}
	if b.Interface == "" && len(n.ID) >= 12 {
		b.Interface = "br-" + n.ID[:12] // the engine's default name
	}
	for _, c := range n.IPAM.Config {
		p, err := netip.ParsePrefix(c.Subnet)
		if err != nil || !p.Addr().Is4() {
			continue
		}
		b.Subnet = p.Masked()
		if gw, err := netip.ParseAddr(c.Gateway); err == nil && gw.Is4() {
			b.Gateway = gw
		} else {
			b.Gateway = b.Subnet.Addr().Next() // the engine's default
		}
		return b, true
	}
	return b, false
}

// RemoveBridge deletes an engine network this node owns. A missing one is
// not an error; one with containers attached is (the engine refuses).
func (e *Executor) RemoveBridge(ctx context.Context, dockerName string) error {
	n, err := e.engine.NetworkInspect(ctx, dockerName, network.InspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect engine network %s: %w", dockerName, err)
	}
	if n.Labels[exec.LabelNodeID] != e.nodeID {
		return fmt.Errorf("engine network %s is not this node's; not removing it", dockerName)
	}
	if err := e.engine.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove engine network %s: %w", dockerName, err)
	}
	return nil
}

// Endpoints lists this node's task containers attached to an engine
// network: task ID (the container's task label) -> IPv4 address.
func (e *Executor) Endpoints(ctx context.Context, dockerName string) (map[string]netip.Addr, error) {
	n, err := e.engine.NetworkInspect(ctx, dockerName, network.InspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("inspect engine network %s: %w", dockerName, err)
	}
	if n.Labels[exec.LabelNodeID] != e.nodeID {
		return nil, fmt.Errorf("engine network %s is not this node's", dockerName)
	}
	out := map[string]netip.Addr{}
	if len(n.Containers) == 0 {
		return out, nil
	}
	list, err := e.engine.ContainerList(ctx, container.ListOptions{
		All: true,
		Filters: filters.NewArgs(
			filters.Arg("label", exec.LabelNodeID+"="+e.nodeID),
			filters.Arg("network", n.ID),
		),
	})
	if err != nil {
		return nil, fmt.Errorf("list containers on engine network %s: %w", dockerName, err)
	}
	for _, c := range list {
		task := c.Labels[exec.LabelTaskID]
		if c.Labels[exec.LabelNodeID] != e.nodeID || task == "" {
			continue
		}
		ep, ok := n.Containers[c.ID]
		if !ok {
			continue // attached after the inspect, or not at all
		}
		p, err := netip.ParsePrefix(ep.IPv4Address)
		if err != nil || !p.Addr().Is4() {
			continue
		}
		out[task] = p.Addr()
	}
	return out, nil
}

// attachNetworks asks the data plane how the task's container joins its
// networks and sets up its creation accordingly: created on the first
// engine network (with its aliases), the gateways as DNS servers. It
// returns the networking config for the create call and the networks to
// connect before start. A task without networks changes nothing.
func (c *controller) attachNetworks(ctx context.Context, hostCfg *container.HostConfig) (*network.NetworkingConfig, []netplane.AttachedNetwork, error) {
	if len(c.task.GetSpec().GetNetworks()) == 0 {
		return nil, nil, nil
	}
	attach := c.e.attacher()
	if attach == nil {
		return nil, nil, errors.New("this node cannot attach containers to networks (its data plane is not running)")
	}
	a, err := attach(ctx, c.task)
	if err != nil {
		return nil, nil, fmt.Errorf("attach to networks: %w", err)
	}
	if len(a.Networks) == 0 {
		return nil, nil, errors.New("attach to networks: the data plane set up none of the task's networks")
	}
	for _, d := range a.DNS {
		hostCfg.DNS = append(hostCfg.DNS, d.String())
	}
	first := a.Networks[0]
	hostCfg.NetworkMode = container.NetworkMode(first.DockerName)
	netCfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		first.DockerName: {Aliases: append([]string(nil), first.Aliases...)},
	}}
	return netCfg, a.Networks[1:], nil
}

// connectNetworks connects the created container to the task's other
// engine networks, skipping those it is on already (a retried Prepare).
func (c *controller) connectNetworks(ctx context.Context, id string, nets []netplane.AttachedNetwork) error {
	if len(nets) == 0 {
		return nil
	}
	ins, err := c.e.engine.ContainerInspect(ctx, id)
	if err != nil {
		return fmt.Errorf("inspect container %s: %w", c.name, err)
	}
	for _, n := range nets {
		if ins.NetworkSettings != nil {
			if _, ok := ins.NetworkSettings.Networks[n.DockerName]; ok {
				continue
			}
		}
		err := c.e.engine.NetworkConnect(ctx, n.DockerName, id, &network.EndpointSettings{Aliases: append([]string(nil), n.Aliases...)})
		if err != nil {
			return fmt.Errorf("connect container %s to engine network %s: %w", c.name, n.DockerName, err)
		}
	}
	return nil
}

// containerIP is the container's IPv4 address: on the default bridge, else
// on the first of its networks (by name) that gave it one.
func containerIP(ns *container.NetworkSettings) string {
	if ns == nil {
		return ""
	}
	if ns.IPAddress != "" {
		return ns.IPAddress
	}
	names := make([]string, 0, len(ns.Networks))
	for name := range ns.Networks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if ep := ns.Networks[name]; ep != nil && ep.IPAddress != "" {
			return ep.IPAddress
		}
	}
	return ""
}
