package api

import (
	"context"
	"fmt"
	"sync"

	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/spec"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// ControlServer answers Control calls on the leader. Reads are
// linearizable: each first confirms leadership with a quorum
// (Raft.ReadBarrier). Followers never serve it; ControlProxy relays.
type ControlServer struct {
	swarmpb.UnimplementedControlServer
	Store *state.Store
	Raft  Raft
	// Logs streams the agents' logs for ServiceLogs (control_logs.go),
	// typically the leader's Dispatcher; without it ServiceLogs is refused.
	Logs LogBroker

	netMu sync.Mutex // serializes network creates (subnet choice, networks.go)
	// Volumes reaches the nodes for RemoveVolumes (volumes.go), typically
	// the leader's Dispatcher; without it RemoveVolumes is refused.
	Volumes VolumeBroker
	// Events serves WatchEvents (events.go), from this manager's replica:
	// unlike the rest of Control it does not need the leader. Without it
	// WatchEvents is refused.
	Events EventSource
}

func (s *ControlServer) read(ctx context.Context) error {
	if err := s.Raft.ReadBarrier(ctx); err != nil {
		return Status(err)
	}
	return nil
}

// managerStatus is Leader, Reachable or Unreachable for voters, "" else.
func managerStatus(r Raft, members []raft.Member, n *swarmpb.Node) string {
	leaderID, _ := r.Leader()
	for _, m := range members {
		if m.ID != n.Id || !m.Voter {
			continue
		}
		switch {
		case m.ID == leaderID:
			return "Leader"
		case r.Unreachable(m.ID), n.Status == swarmpb.NodeStatus_NODE_STATUS_DOWN:
			return "Unreachable"
		default:
			return "Reachable"
		}
	}
	return ""
}

func (s *ControlServer) nodeInfos(nodes []*swarmpb.Node) ([]*swarmpb.NodeInfo, error) {
	members, err := s.Raft.Members()
	if err != nil {
		return nil, Status(err)
	}
	out := make([]*swarmpb.NodeInfo, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, &swarmpb.NodeInfo{Node: n, ManagerStatus: managerStatus(s.Raft, members, n)})
	}
	return out, nil
}

// ListNodes returns one page of nodes in ID order (see paging.go).
func (s *ControlServer) ListNodes(ctx context.Context, req *swarmpb.ListNodesRequest) (*swarmpb.ListNodesResponse, error) {
	size, after, err := pageArgs(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, Status(err)
	}
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	var nodes []*swarmpb.Node
	s.Store.View(func(tx state.ReadTx) { nodes = tx.NodesPage(after, size+1) })
	infos, err := s.nodeInfos(nodes)
	if err != nil {
		return nil, err
	}
	resp := &swarmpb.ListNodesResponse{}
	pg := pager{limit: size}
	for _, ni := range infos {
		if !pg.fits(proto.Size(ni)) {
			break
		}
		resp.Nodes = append(resp.Nodes, ni)
	}
	if len(resp.Nodes) > 0 {
		resp.NextPageToken = pg.next(len(infos), resp.Nodes[len(resp.Nodes)-1].Node.Id)
	}
	return resp, nil
}

func (s *ControlServer) getNode(ctx context.Context, ref string) (*swarmpb.Node, error) {
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	var n *swarmpb.Node
	var err error
	s.Store.View(func(tx state.ReadTx) { n, err = findNode(tx, ref) })
	return n, Status(err)
}

func (s *ControlServer) GetNode(ctx context.Context, req *swarmpb.GetNodeRequest) (*swarmpb.GetNodeResponse, error) {
	n, err := s.getNode(ctx, req.Node)
	if err != nil {
		return nil, err
	}
	infos, err := s.nodeInfos([]*swarmpb.Node{n})
	if err != nil {
		return nil, err
	}
	return &swarmpb.GetNodeResponse{Node: infos[0]}, nil
}

// UpdateNode changes availability, labels or the desired role. Demotion is
// checked against quorum here; the leader's role manager then carries it
// out (handing leadership over first when the leader itself is demoted).
func (s *ControlServer) UpdateNode(ctx context.Context, req *swarmpb.UpdateNodeRequest) (*swarmpb.UpdateNodeResponse, error) {
	n, err := s.getNode(ctx, req.Node)
	if err != nil {
		return nil, err
	}
	if req.Availability != nil {
		if _, ok := swarmpb.NodeAvailability_name[int32(*req.Availability)]; !ok {
			return nil, Status(invalidf("invalid availability %d", *req.Availability))
		}
	}
	// A first check of what the request adds, before any Raft work; the
	// merged spec is checked again below, against the node as stored.
	if err := spec.ValidateLabels("node label", req.LabelAdd); err != nil {
		return nil, Status(invalidf("%v", err))
	}
	if req.DesiredRole != nil && *req.DesiredRole == swarmpb.NodeRole_NODE_ROLE_WORKER &&
		n.GetSpec().GetDesiredRole() == swarmpb.NodeRole_NODE_ROLE_MANAGER {
		if err := s.checkDemote(n); err != nil {
			return nil, Status(err)
		}
		if leaderID, _ := s.Raft.Leader(); leaderID == n.Id && s.Raft.IsLeader() {
			// Demoting the leader: hand leadership over first. Once the
			// demotion is written the other managers refuse this one's
			// Raft connections, so it could no longer hand over, only
			// lose its followers and leave the cluster without a leader
			// until they elect one. Nothing is written here: "not the
			// leader" makes the caller route the call to the new leader.
			// If the handover fails, the demotion is written anyway and
			// the cluster takes that slower path.
			if err := s.Raft.TransferLeadership(); err == nil {
				return nil, Status(fmt.Errorf("%w: it handed leadership over before being demoted; route the call to the new leader", raft.ErrNotLeader))
			}
		}
	}
	var invalid error
	err = updateNode(ctx, s.Store, s.Raft, n.Id, func(c *swarmpb.Node) bool {
		invalid = nil
		before := proto.Clone(c.Spec).(*swarmpb.NodeSpec)
		if req.DesiredRole != nil {
			c.Spec.DesiredRole = *req.DesiredRole
		}
		if req.Availability != nil {
			c.Spec.Availability = *req.Availability
		}
		if len(req.LabelAdd) > 0 && c.Spec.Labels == nil {
			c.Spec.Labels = map[string]string{}
		}
		for k, v := range req.LabelAdd {
			c.Spec.Labels[k] = v
		}
		for _, k := range req.LabelRm {
			delete(c.Spec.Labels, k)
		}
		if invalid = spec.ValidateNodeSpec(c.Spec); invalid != nil {
			return false
		}
		return !proto.Equal(before, c.Spec)
	})
	if err == nil && invalid != nil {
		err = invalidf("%v", invalid)
	}
	if err != nil {
		return nil, Status(err)
	}
	resp, err := s.GetNode(ctx, &swarmpb.GetNodeRequest{Node: n.Id})
	if err != nil {
		return nil, err
	}
	return &swarmpb.UpdateNodeResponse{Node: resp.Node}, nil
}

// checkDemote refuses a demotion that would remove the last manager or
// leave the remaining managers without a reachable majority.
func (s *ControlServer) checkDemote(n *swarmpb.Node) error {
	members, err := s.Raft.Members()
	if err != nil {
		return err
	}
	voters, reachable := 0, 0
	isVoter := false
	for _, m := range members {
		if !m.Voter {
			continue
		}
		if m.ID == n.Id {
			isVoter = true
			continue
		}
		voters++
		if s.reachable(m.ID) {
			reachable++
		}
	}
	if !isVoter {
		return nil
	}
	if voters == 0 {
		return refusedf("cannot demote %s: it is the last manager of the cluster; promote another node first", hostname(n))
	}
	if need := voters/2 + 1; reachable < need {
		return refusedf("cannot demote %s: the cluster would lose quorum (%d of the %d remaining managers reachable, %d needed)", hostname(n), reachable, voters, need)
	}
	return nil
}

func (s *ControlServer) reachable(id string) bool {
	if s.Raft.Unreachable(id) {
		return false
	}
	var n *swarmpb.Node
	s.Store.View(func(tx state.ReadTx) { n = tx.GetNode(id) })
	if n == nil {
		return false
	}
	leaderID, _ := s.Raft.Leader()
	return id == leaderID || n.Status != swarmpb.NodeStatus_NODE_STATUS_DOWN
}

func hostname(n *swarmpb.Node) string {
	if h := n.GetDescription().GetHostname(); h != "" {
		return h
	}
	return n.Id
}

// RemoveNode deletes a node from the cluster. Managers must be demoted
// first; a node still Ready needs --force (its agent is told it was removed).
func (s *ControlServer) RemoveNode(ctx context.Context, req *swarmpb.RemoveNodeRequest) (*swarmpb.RemoveNodeResponse, error) {
	n, err := s.getNode(ctx, req.Node)
	if err != nil {
		return nil, err
	}
	members, err := s.Raft.Members()
	if err != nil {
		return nil, Status(err)
	}
	for _, m := range members {
		if m.ID == n.Id {
			return nil, Status(refusedf("node %s is a manager: demote it with 'swarmctl node demote %s' before removing it", hostname(n), hostname(n)))
		}
	}
	if n.GetSpec().GetDesiredRole() == swarmpb.NodeRole_NODE_ROLE_MANAGER {
		return nil, Status(refusedf("node %s is being promoted to manager: demote it first", hostname(n)))
	}
	if n.Status == swarmpb.NodeStatus_NODE_STATUS_READY && !req.Force {
		return nil, Status(refusedf("node %s is Ready: stop it or run 'swarmctl leave' on it first, or use --force", hostname(n)))
	}
	if _, err := s.Raft.Apply(ctx, state.Batch(state.Delete(n))); err != nil {
		return nil, Status(fmt.Errorf("remove node %s: %w", hostname(n), err))
	}
	return &swarmpb.RemoveNodeResponse{}, nil
}

// GetJoinToken returns (and with rotate, first replaces) a join token.
// A rotated token is refused from then on; joined nodes keep their
// certificates.
func (s *ControlServer) GetJoinToken(ctx context.Context, req *swarmpb.GetJoinTokenRequest) (*swarmpb.GetJoinTokenResponse, error) {
	if err := s.read(ctx); err != nil {
		return nil, err
	}
	var c *swarmpb.Cluster
	s.Store.View(func(tx state.ReadTx) { c = tx.Cluster() })
	if c == nil {
		return nil, Status(ErrNotInCluster)
	}
	if req.Rotate {
		tok, err := ca.GenerateJoinToken(c.RootCa.CertPem)
		if err != nil {
			return nil, Status(err)
		}
		nc := proto.Clone(c).(*swarmpb.Cluster)
		if req.Role == swarmpb.NodeRole_NODE_ROLE_MANAGER {
			nc.JoinTokens.Manager = tok
		} else {
			nc.JoinTokens.Worker = tok
		}
		if _, err := s.Raft.Apply(ctx, state.Batch(state.Update(nc))); err != nil {
			return nil, Status(fmt.Errorf("rotate join token: %w", err))
		}
		c = nc
	}
	tok := c.JoinTokens.GetWorker()
	if req.Role == swarmpb.NodeRole_NODE_ROLE_MANAGER {
		tok = c.JoinTokens.GetManager()
	}
	return &swarmpb.GetJoinTokenResponse{Token: tok, Managers: managerAddrs(s.Raft)}, nil
}
