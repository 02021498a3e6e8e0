package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/netplane"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// maxReportedNetworks bounds NodeDescription.networks (the managers refuse
// more).
const maxReportedNetworks = 256

// networkAttachable is an executor whose containers can join cluster
// networks (the docker executor): the agent gives it the data plane's
// Attach.
type networkAttachable interface {
	SetNetworkAttacher(func(context.Context, *swarmpb.Task) (netplane.Attachment, error))
}

// dataPlane is what the agent uses of a netplane.Plane.
type dataPlane interface {
	Run(ctx context.Context) error
	Update(view *swarmpb.EndpointsMessage)
	Attach(ctx context.Context, t *swarmpb.Task) (netplane.Attachment, error)
	Report() []*swarmpb.NodeNetwork
	FetchImage(ctx context.Context, nodeID, addr, imageID string) (io.ReadCloser, error)
}

// newRules makes the node's kernel rules and newPlane its data plane;
// variables so tests can stand in for nft and watch the wiring.
var (
	newRules = func(nodeID string) (netplane.Rules, error) { return netplane.NewNFTRules(nodeID) }
	newPlane = func(cfg netplane.Config) dataPlane { return netplane.New(cfg) }
)

// setupPlane creates the node's service-discovery data plane when the
// executor's engine has bridge networks (an executor without them, like the
// fake one, runs tasks with networks unattached). Without usable kernel
// rules the plane still adopts and cleans up bridges, but tasks with
// networks are rejected with the reason.
func (ta *taskAgent) setupPlane(cfg Config, ex exec.Executor) {
	br, ok := ex.(netplane.Bridges)
	if !ok {
		return
	}
	pc := netplane.Config{
		NodeID:    cfg.NodeID,
		ServerTLS: cfg.DataServerTLS,
		ClientTLS: cfg.DataClientTLS,
		Bridges:   br,
		Logger:    ta.log,
	}
	if cfg.DataPort > 0 && cfg.DataServerTLS != nil {
		addr := dataAddr(cfg.AdvertiseAddr, cfg.DataPort)
		// A data port taken by another program must not stop the whole
		// data plane: local service discovery still works without it.
		if err := canListen(addr); err != nil {
			ta.log.Warn("the data port is unusable: this node's tasks on networks are reachable only from this node (choose another --data-port)", "addr", addr, "err", err)
		} else {
			pc.DataAddr = addr
			ta.dataPort = uint32(cfg.DataPort)
		}
	}
	if img, ok := ex.(netplane.ImageSource); ok {
		pc.Images = img
	}
	rules, err := newRules(cfg.NodeID)
	if err != nil {
		ta.rulesErr = err
		pc.RulesError = err
		ta.log.Warn("service discovery unavailable on this node: tasks on networks will be rejected", "err", err)
	} else {
		pc.Rules = rules
	}
	ta.plane = newPlane(pc)
	if cfg.FetchImage == nil {
		// Images missing here come from other nodes over the data path.
		ta.images.setTransport(ta.plane.FetchImage)
	}
	if na, ok := ex.(networkAttachable); ok {
		na.SetNetworkAttacher(ta.attachNetworks)
	}
}

// dataAddr is where the data-path listener binds: the advertised host (the
// address the managers observe this node at, and pair with its data port).
func dataAddr(advertise string, port int) string {
	host, _, err := net.SplitHostPort(advertise)
	if err != nil {
		host = advertise
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// canListen checks that a TCP listener can bind addr now.
func canListen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// attachNetworks is the executor's network attacher: the data plane's
// Attach, or why this node cannot attach tasks to networks.
func (ta *taskAgent) attachNetworks(ctx context.Context, t *swarmpb.Task) (netplane.Attachment, error) {
	if len(t.GetSpec().GetNetworks()) == 0 {
		return netplane.Attachment{}, nil
	}
	if ta.rulesErr != nil {
		return netplane.Attachment{}, fmt.Errorf("this node cannot run tasks on networks: %w", ta.rulesErr)
	}
	return ta.plane.Attach(ctx, t)
}

// runPlane runs the data plane, if any, until ctx ends.
func (ta *taskAgent) runPlane(ctx context.Context) {
	if ta.plane == nil {
		return
	}
	if err := ta.plane.Run(ctx); err != nil && ctx.Err() == nil {
		ta.log.Warn("service discovery data plane stopped; services on networks will not reach each other from this node", "err", err)
	}
}

// updatePlane hands the discovery view of an Endpoints message to the
// data plane (it does not block).
func (ta *taskAgent) updatePlane(msg *swarmpb.EndpointsMessage) {
	if ta.plane != nil {
		ta.plane.Update(msg)
	}
}

// describeNetworks adds the data port and what the data plane set up to a
// heartbeat's node description.
func (ta *taskAgent) describeNetworks(d *swarmpb.NodeDescription) {
	if ta.plane == nil {
		return
	}
	d.DataPort = ta.dataPort
	nets := ta.plane.Report()
	if len(nets) > maxReportedNetworks {
		nets = nets[:maxReportedNetworks]
	}
	d.Networks = nets
}
