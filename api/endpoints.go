package api

import (
	"context"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/spec"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// endpointTable is the routing mesh's table for one term: every published
// ingress port and the addresses of the running tasks behind it. It is
// rebuilt from the store on changes (coalesced) and every node's mesh
// receives the whole table, which stays small: one entry per published
// port, one address per running task.
type endpointTable struct {
	mu      sync.Mutex
	ports   []*swarmpb.ServiceEndpoint
	disc    *discovery    // service discovery, filtered per node when sent (discovery.go)
	changed chan struct{} // closed and replaced when ports or disc change
	done    chan struct{}
	stopped chan struct{}
}

func (d *Dispatcher) startEndpoints(ctx context.Context) *endpointTable {
	e := &endpointTable{changed: make(chan struct{}), done: make(chan struct{}), stopped: make(chan struct{})}
	events, cancel := d.Store.ViewAndWatch(func(tx state.ReadTx) { e.ports, e.disc = buildEndpoints(tx), buildDiscovery(tx) })
	go func() {
		defer close(e.stopped)
		defer func() { cancel() }()
		debounce := time.NewTimer(time.Hour)
		debounce.Stop()
		pending := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-e.done:
				return
			case ev, ok := <-events:
				if !ok {
					// Closed by a Restore (or for falling behind): the
					// state was replaced, so rebuild on the new watch,
					// through the timer like any change.
					cancel()
					events, cancel = d.Store.Watch()
				} else if !affectsEndpoints(ev) && !affectsDiscovery(ev) {
					continue
				}
				if !pending {
					pending = true
					debounce.Reset(20 * time.Millisecond)
				}
			case <-debounce.C:
				pending = false
				var ports []*swarmpb.ServiceEndpoint
				var disc *discovery
				d.Store.View(func(tx state.ReadTx) { ports, disc = buildEndpoints(tx), buildDiscovery(tx) })
				e.set(ports, disc)
			}
		}
	}()
	return e
}

func (e *endpointTable) stop() {
	close(e.done)
	<-e.stopped
}

func (e *endpointTable) set(ports []*swarmpb.ServiceEndpoint, disc *discovery) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if equalEndpoints(e.ports, ports) && e.disc.equal(disc) {
		return
	}
	e.ports, e.disc = ports, disc
	close(e.changed)
	e.changed = make(chan struct{})
}

func (e *endpointTable) get() ([]*swarmpb.ServiceEndpoint, <-chan struct{}) {
	ports, _, changed := e.getAll()
	return ports, changed
}

func (e *endpointTable) getAll() ([]*swarmpb.ServiceEndpoint, *discovery, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ports, e.disc, e.changed
}

func equalEndpoints(a, b []*swarmpb.ServiceEndpoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// affectsEndpoints filters the events that can change the table: services,
// tasks entering or leaving the running set, and node address changes.
func affectsEndpoints(ev state.Event) bool {
	switch {
	case ev.Service() != nil:
		return true
	case ev.Task() != nil:
		old, _ := ev.Old.(*swarmpb.Task)
		t := ev.Task()
		// Besides serving and ports (the mesh), the discovery view follows
		// which nodes have tasks on a network: a task placed on a node, or
		// one that has finished there.
		return old == nil || ev.Kind == state.EventDelete || serving(old) != serving(t) ||
			old.NodeId != t.NodeId || finished(old) != finished(t) ||
			!portsEqual(old.GetStatus().GetPorts(), t.GetStatus().GetPorts())
	case ev.Node() != nil:
		old, _ := ev.Old.(*swarmpb.Node)
		return old == nil || ev.Kind == state.EventDelete || old.Addr != ev.Node().Addr ||
			old.GetDescription().GetDataPort() != ev.Node().GetDescription().GetDataPort()
	case ev.Network() != nil:
		return true
	}
	return false
}

// finished reports a task that has stopped for good: its node no longer
// has it on its networks.
func finished(t *swarmpb.Task) bool {
	return t.GetStatus().GetState() >= swarmpb.TaskState_TASK_STATE_COMPLETE
}

// serving reports a task the mesh should send traffic to: it runs (for a
// task with a health check, the agent reports RUNNING only once healthy)
// and is meant to keep running, so a task about to stop leaves the table
// before it stops.
func serving(t *swarmpb.Task) bool {
	return t.DesiredState == swarmpb.TaskState_TASK_STATE_RUNNING && t.GetStatus().GetState() == swarmpb.TaskState_TASK_STATE_RUNNING
}

func buildEndpoints(tx state.ReadTx) []*swarmpb.ServiceEndpoint {
	var out []*swarmpb.ServiceEndpoint
	for _, svc := range tx.ListServices() {
		var tasks []*swarmpb.Task
		for _, p := range svc.GetSpec().GetPorts() {
			if p.PublishMode == "host" || p.PublishedPort == 0 {
				continue
			}
			if tasks == nil {
				tasks = tx.TasksByService(svc.Id)
			}
			se := &swarmpb.ServiceEndpoint{ServiceId: svc.Id, ServiceName: svc.Spec.Name, Protocol: protoOrTCP(p.Protocol), PublishedPort: p.PublishedPort, ProxyProtocol: p.ProxyProtocol}
			for _, t := range tasks {
				if !serving(t) {
					continue
				}
				nodeAddr := tx.GetNode(t.NodeId).GetAddr()
				for _, b := range t.GetStatus().GetPorts() {
					if b.TargetPort != p.TargetPort || protoOrTCP(b.Protocol) != se.Protocol || b.PublishMode == "host" || b.HostPort == 0 {
						continue
					}
					// Only the node's own address, as recorded from its
					// connection, is a backend; the dispatcher drops other
					// bindings, and this keeps any stored before (or left
					// behind by an address change) out of every mesh.
					if spec.ValidatePortBinding(b, hostIP(nodeAddr)) != nil {
						continue
					}
					host, _, _ := net.SplitHostPort(nodeAddr)
					if host == "" {
						continue
					}
					se.Backends = append(se.Backends, &swarmpb.Backend{TaskId: t.Id, Addr: net.JoinHostPort(host, strconv.Itoa(int(b.HostPort)))})
				}
			}
			sort.Slice(se.Backends, func(i, j int) bool { return se.Backends[i].TaskId < se.Backends[j].TaskId })
			out = append(out, se)
		}
	}
	return out
}

func protoOrTCP(p string) string {
	if p == "" {
		return "tcp"
	}
	return p
}

// Endpoints streams the routing table to a node's mesh, with the service
// discovery view computed for that node (discovery.go): the whole of both
// now, then again on every change that concerns the node, until the term
// ends.
func (d *Dispatcher) Endpoints(_ *swarmpb.EndpointsRequest, stream grpc.ServerStreamingServer[swarmpb.EndpointsMessage]) error {
	ctx := stream.Context()
	// The auth interceptor has checked the node certificate; without one
	// (never in a cluster) the node gets the routing table only.
	var nodeID string
	if id, err := ca.PeerIdentity(ctx); err == nil {
		nodeID = id.NodeID
	}
	return d.streamEndpoints(ctx, nodeID, stream.Send)
}

func (d *Dispatcher) streamEndpoints(ctx context.Context, nodeID string, send func(*swarmpb.EndpointsMessage) error) error {
	d.mu.Lock()
	active, table := d.active, d.endpoints
	d.mu.Unlock()
	if !active || table == nil {
		return d.notLeader(ctx)
	}
	var last *swarmpb.EndpointsMessage
	for {
		ports, disc, changed := table.getAll()
		msg := &swarmpb.EndpointsMessage{Ports: ports}
		if nodeID != "" {
			disc.forNode(nodeID, msg)
		}
		if last == nil || !proto.Equal(last, msg) {
			if err := send(msg); err != nil {
				return err
			}
			last = msg
		}
		select {
		case <-changed:
		case <-table.done:
			return status.Error(codes.Unavailable, "leadership changed; reconnect to the new leader")
		case <-ctx.Done():
			return nil
		}
	}
}

func portsEqual(a, b []*swarmpb.PortBinding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
