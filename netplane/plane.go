package netplane

import (
	"context"
	"errors"
	"io"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// STUB: the signatures below are the contract; the netplane-core work
// replaces the bodies.

// Plane is one node's service-discovery data plane.
type Plane struct{ cfg Config }

// New makes a Plane; Run starts it.
func New(cfg Config) *Plane { return &Plane{cfg: cfg} }

// Run serves the tunnel listener (if DataAddr is set) and keeps bridges,
// rules, names and proxies in line with the latest view until ctx ends.
// On return the listeners are closed; bridges and rules are left in place
// (running tasks keep working while the daemon restarts).
func (p *Plane) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// Update hands the Plane the latest discovery view from the leader. It does
// not block on the engine or the kernel.
func (p *Plane) Update(view *swarmpb.EndpointsMessage) {}

// Attach ensures the engine networks for the task's networks exist on this
// node and says how to connect its container. A task with no networks gets
// an empty Attachment.
func (p *Plane) Attach(ctx context.Context, t *swarmpb.Task) (Attachment, error) {
	if len(t.GetSpec().GetNetworks()) == 0 {
		return Attachment{}, nil
	}
	return Attachment{}, errors.New("netplane: not implemented")
}

// Report is what this node has set up per network, for its heartbeats.
func (p *Plane) Report() []*swarmpb.NodeNetwork { return nil }

// FetchImage asks the node at addr (its data-path address) whose ID is
// nodeID for an image by ID and returns the 'docker save' stream.
func (p *Plane) FetchImage(ctx context.Context, nodeID, addr, imageID string) (io.ReadCloser, error) {
	return nil, errors.New("netplane: not implemented")
}
