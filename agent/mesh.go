package agent

import (
	"context"
	"errors"
	"time"

	"github.com/raftswarm/raftswarm/internal/retry"
	"github.com/raftswarm/raftswarm/mesh"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// meshRetry is how often a table whose ports could not all be bound is
// applied again (a port may be freed by another program).
const meshRetry = 3 * time.Second

// runMesh runs this node's routing mesh: it keeps an Endpoints stream open
// with the leader and applies every table it receives, so each published
// port answers on this node's ingress address whatever node runs the tasks.
func (ta *taskAgent) runMesh(ctx context.Context) {
	m := mesh.New(ta.ingress, ta.log.With("component", "mesh"))
	ta.setupKernelPath(ctx, m)
	// Close removes the kernel rules.
	defer ta.leaveNoRules(m)
	ta.mesh.Store(m)
	defer ta.mesh.Store(nil)
	backoff := retry.NewBackoff(sessionMinBackoff, sessionMaxBackoff)
	for ctx.Err() == nil {
		addr, changed := ta.leader.get()
		if addr == "" {
			return
		}
		sctx, cancel := context.WithCancel(ctx)
		go func() {
			// Follow the leader the heartbeat loop finds.
			select {
			case <-sctx.Done():
			case <-changed:
				cancel()
			}
		}()
		got, hint, err := ta.watchEndpoints(sctx, addr, m)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if got {
			backoff.Reset()
		}
		if hint != "" && hint != addr {
			ta.leader.set(hint)
			continue
		}
		ta.log.Debug("endpoint stream ended; reconnecting", "manager", addr, "err", err)
		_, moved := ta.leader.get() // a new leader found cuts the wait short
		retry.SleepOrWake(ctx, backoff.Next(), moved)
	}
}

// watchEndpoints applies one Endpoints stream's tables until it breaks.
// The mesh keeps its last table meanwhile: forwarding to the tasks that
// ran a moment ago beats refusing every connection during an election.
func (ta *taskAgent) watchEndpoints(ctx context.Context, addr string, m *mesh.Mesh) (got bool, hint string, err error) {
	conn, err := ta.leader.conn(addr)
	if err != nil {
		return false, "", err
	}
	stream, err := swarmpb.NewDispatcherClient(conn).Endpoints(ctx, &swarmpb.EndpointsRequest{})
	if err != nil {
		return false, "", err
	}
	msgs := make(chan *swarmpb.EndpointsMessage)
	errc := make(chan error, 1)
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- msg:
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
		}
	}()
	reapply := time.NewTicker(meshRetry)
	defer reapply.Stop()
	var last []*swarmpb.ServiceEndpoint
	var failing bool
	for {
		select {
		case msg := <-msgs:
			got = true
			ta.updatePlane(msg)
			last = msg.Ports
			ta.routeMu.Lock()
			ta.routes = last
			ta.routeMu.Unlock()
			failing = ta.applyMesh(m, last)
			ta.setLocalTargets(ctx, m)
			failing = failing || m.KernelRetry()
		case <-reapply.C:
			if failing {
				failing = ta.applyMesh(m, last)
			}
		case err := <-errc:
			return got, leaderHint(stream.Trailer()), err
		}
	}
}

// applyMesh applies one table; failing means part of it is not served as
// it should be (a port not bound, kernel rules not applied) and applying
// the same table again, every meshRetry, may fix it.
func (ta *taskAgent) applyMesh(m *mesh.Mesh, ports []*swarmpb.ServiceEndpoint) (failing bool) {
	err := m.Update(ports)
	var ue *mesh.UpdateError
	if errors.As(err, &ue) {
		ta.log.Warn("routing mesh could not bind some published ports; retrying", "err", err)
		return true
	}
	if err != nil {
		ta.log.Warn("routing mesh update failed", "err", err)
	}
	// A failed nft transaction (a loaded host's timeout, say) leaves
	// every port to the userspace proxy; without a retry that would last
	// until the next change of the endpoint table.
	return m.KernelRetry()
}

// RoutingTable returns the routing mesh's table as the agent last applied
// it (nil before the first): the published ports and their backends.
func (a *Agent) RoutingTable() []*swarmpb.ServiceEndpoint {
	ta := a.tasks
	ta.routeMu.Lock()
	defer ta.routeMu.Unlock()
	out := make([]*swarmpb.ServiceEndpoint, len(ta.routes))
	for i, se := range ta.routes {
		out[i] = proto.Clone(se).(*swarmpb.ServiceEndpoint)
	}
	return out
}
