package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/retry"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/protobuf/proto"
)

// RaftServer serves RaftMembership: adding managers as voters, forwarding
// writes from followers, and liveness pings.
type RaftServer struct {
	swarmpb.UnimplementedRaftMembershipServer
	NodeID string
	Store  *state.Store
	Raft   Raft
	Dialer Dialer
}

// Join adds the calling manager as a voter, once it answers over Raft
// (raft.Node.AddVoter). Only the leader serves it; a follower answers "not
// the leader". The caller is identified by its certificate, and its node
// object, as the leader sees it, must want to be a manager, so a stale
// certificate cannot rejoin. (That check is the handler's, on the leader,
// rather than the interceptor's: a follower may not have applied the
// creation of a node that has just joined.)
func (s *RaftServer) Join(ctx context.Context, req *swarmpb.RaftJoinRequest) (*swarmpb.RaftJoinResponse, error) {
	id, err := ca.RequireRole(ctx, swarmpb.NodeRole_NODE_ROLE_MANAGER)
	if err != nil {
		return nil, err
	}
	if !s.Raft.IsLeader() {
		// Not relayed: the leader would see this manager's certificate,
		// not the caller's, and add the wrong node. The joining manager
		// asks the next manager it knows.
		if _, leader := s.Raft.Leader(); leader != "" {
			return nil, Status(fmt.Errorf("%w: ask the leader at %s", raft.ErrNotLeader, leader))
		}
		return nil, Status(raft.ErrNotLeader)
	}
	if err := s.addManager(ctx, id.NodeID, req.Addr); err != nil {
		return nil, Status(err)
	}
	members, err := s.Raft.Members()
	if err != nil {
		return nil, Status(err)
	}
	resp := &swarmpb.RaftJoinResponse{}
	for _, m := range members {
		resp.Members = append(resp.Members, &swarmpb.RaftMember{NodeId: m.ID, Addr: m.Addr, Voter: m.Voter})
	}
	return resp, nil
}

func (s *RaftServer) addManager(ctx context.Context, nodeID, addr string) error {
	if addr == "" {
		return invalidf("join: the manager's address is required")
	}
	var node *swarmpb.Node
	s.Store.View(func(tx state.ReadTx) { node = tx.GetNode(nodeID) })
	if node == nil {
		return deniedf("node %s is not part of this cluster", nodeID)
	}
	if node.GetSpec().GetDesiredRole() != swarmpb.NodeRole_NODE_ROLE_MANAGER {
		return deniedf("node %s is not meant to be a manager (it was demoted); it must renew its certificate", nodeID)
	}
	if err := s.Raft.AddVoter(ctx, nodeID, addr); err != nil {
		var ue *raft.UnresponsiveError
		if errors.As(err, &ue) {
			ue.ID = fmt.Sprintf("%s (%s)", hostname(node), nodeID)
		}
		return err
	}
	return updateNode(ctx, s.Store, s.Raft, nodeID, func(n *swarmpb.Node) bool {
		if n.Role == swarmpb.NodeRole_NODE_ROLE_MANAGER && n.Addr == addr {
			return false
		}
		n.Role = swarmpb.NodeRole_NODE_ROLE_MANAGER
		n.Addr = addr
		return true
	})
}

// Forward applies a follower's write on the leader.
func (s *RaftServer) Forward(ctx context.Context, req *swarmpb.ForwardRequest) (*swarmpb.ForwardResponse, error) {
	if !s.Raft.IsLeader() {
		return nil, Status(raft.ErrNotLeader)
	}
	idx, err := s.Raft.ApplyCommand(ctx, req.Command)
	if err != nil {
		return nil, Status(err)
	}
	return &swarmpb.ForwardResponse{Index: idx}, nil
}

// Ping answers with this manager's view of leadership.
func (s *RaftServer) Ping(ctx context.Context, _ *swarmpb.PingRequest) (*swarmpb.PingResponse, error) {
	_, leader := s.Raft.Leader()
	return &swarmpb.PingResponse{NodeId: s.NodeID, Leader: s.Raft.IsLeader(), LeaderAddr: leader}, nil
}

// nodeUpdateAttempts bounds updateNode's re-reads. Every node write is a
// re-applied change (labels, availability, role, status), so a conflict
// only means another write landed first; each round lets at least one
// writer through, so the bound must exceed the writers that may race on
// one node (several clients, plus the dispatcher's status writes). Five,
// as before, failed 8 concurrent `node update --label-add` calls with
// "update out of sequence".
const nodeUpdateAttempts = 50

// updateNode applies fn to a fresh copy of the node and writes it when fn
// reports a change, retrying when another write got there first. The
// retries back off briefly (up to 50 ms) so racing writers spread out.
func updateNode(ctx context.Context, st *state.Store, r Raft, id string, fn func(*swarmpb.Node) bool) error {
	b := retry.NewBackoff(time.Millisecond, 50*time.Millisecond)
	for attempt := 1; ; attempt++ {
		var cur *swarmpb.Node
		st.View(func(tx state.ReadTx) { cur = tx.GetNode(id) })
		if cur == nil {
			return notFoundf("node %s not found", id)
		}
		n := proto.Clone(cur).(*swarmpb.Node)
		if n.Spec == nil {
			n.Spec = &swarmpb.NodeSpec{}
		}
		if !fn(n) {
			return nil
		}
		_, err := r.Apply(ctx, state.Batch(state.Update(n)))
		if errors.Is(err, state.ErrConflict) && attempt < nodeUpdateAttempts && b.Wait(ctx) {
			continue
		}
		if err != nil {
			return fmt.Errorf("update node %s: %w", id, err)
		}
		return nil
	}
}
