package api

import (
	"context"
	"fmt"

	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/identity"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/spec"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// CAServer hands out node certificates. Any manager serves it: the root CA
// key is part of the replicated cluster object.
type CAServer struct {
	swarmpb.UnimplementedCAServer
	Store  *state.Store
	Raft   Raft
	Dialer Dialer
}

func (s *CAServer) cluster() (*swarmpb.Cluster, *ca.RootCA, error) {
	var c *swarmpb.Cluster
	s.Store.View(func(tx state.ReadTx) { c = tx.Cluster() })
	if c == nil || c.RootCa == nil {
		return nil, nil, status.Error(codes.Unavailable, "this manager has not received the cluster state yet; try again")
	}
	root, err := ca.ParseRootCA(c.RootCa.CertPem, c.RootCa.KeyPem)
	if err != nil {
		return nil, nil, status.Errorf(codes.Internal, "load root CA: %v", err)
	}
	return c, root, nil
}

func (s *CAServer) GetRootCACertificate(ctx context.Context, _ *swarmpb.GetRootCACertificateRequest) (*swarmpb.GetRootCACertificateResponse, error) {
	c, _, err := s.cluster()
	if err != nil {
		return nil, err
	}
	return &swarmpb.GetRootCACertificateResponse{CertPem: c.RootCa.CertPem}, nil
}

// IssueNodeCertificate exchanges a join token for a node identity. The role
// comes from the token that matched, compared in constant time.
func (s *CAServer) IssueNodeCertificate(ctx context.Context, req *swarmpb.IssueNodeCertificateRequest) (*swarmpb.IssueNodeCertificateResponse, error) {
	tok, err := ca.ParseJoinToken(req.Token)
	if err != nil {
		return nil, Status(err)
	}
	// What a joining node says about itself is checked where it connects:
	// its hostname against the rules of package spec, its address against
	// the connection (nodeAddr). A follower relaying the request to the
	// leader has done so already, and the leader sees the follower's
	// address, so it takes the address of a request relayed by a manager as
	// it comes.
	if err := spec.ValidateHostname(req.Hostname); err != nil {
		return nil, Status(invalidf("%v", err))
	}
	if id, err := ca.PeerIdentity(ctx); err != nil || id.Role != swarmpb.NodeRole_NODE_ROLE_MANAGER {
		addr, err := nodeAddr(ctx, req.Addr)
		if err != nil {
			return nil, Status(err)
		}
		req = proto.Clone(req).(*swarmpb.IssueNodeCertificateRequest)
		req.Addr = addr
	}
	// The token must be checked against the current tokens: a follower's
	// replica may not have applied a rotation yet, and would let a rotated
	// token in. So a follower relays the request to the leader, and the
	// leader confirms its leadership before reading.
	if !s.Raft.IsLeader() {
		return s.relayIssue(ctx, req)
	}
	if err := s.Raft.ReadBarrier(ctx); err != nil {
		return nil, Status(err)
	}
	c, root, err := s.cluster()
	if err != nil {
		return nil, err
	}
	if err := ca.CheckDigest(c.RootCa.CertPem, tok.Digest); err != nil {
		return nil, Status(deniedf("%v", err))
	}
	var role swarmpb.NodeRole
	workerOK := ca.TokensEqual(req.Token, c.JoinTokens.GetWorker())
	managerOK := ca.TokensEqual(req.Token, c.JoinTokens.GetManager())
	switch {
	case managerOK:
		role = swarmpb.NodeRole_NODE_ROLE_MANAGER
	case workerOK:
		role = swarmpb.NodeRole_NODE_ROLE_WORKER
	default:
		return nil, Status(deniedf("invalid join token: it was rotated or never issued; get the current one with 'swarmctl join-token worker|manager' on a manager"))
	}
	id := identity.NewID()
	cert, err := root.IssueNodeCert(req.CsrPem, id, c.Id, role)
	if err != nil {
		return nil, Status(invalidf("cannot sign the certificate request: %v", err))
	}
	node := &swarmpb.Node{
		Id:          id,
		Spec:        &swarmpb.NodeSpec{DesiredRole: role},
		Description: &swarmpb.NodeDescription{Hostname: req.Hostname},
		Role:        swarmpb.NodeRole_NODE_ROLE_WORKER, // becomes manager when it joins Raft
		Addr:        req.Addr,                          // from the connection: see nodeAddr
	}
	if _, err := s.Raft.Apply(ctx, state.Batch(state.Create(node))); err != nil {
		return nil, Status(fmt.Errorf("register node: %w", err))
	}
	return &swarmpb.IssueNodeCertificateResponse{
		NodeId: id, ClusterId: c.Id, Role: role, CertPem: cert,
		RootCaPem: c.RootCa.CertPem, Managers: managerAddrs(s.Raft),
	}, nil
}

// RenewNodeCertificate issues a fresh certificate whose role is the node's
// desired role: this is how a promoted worker obtains a manager identity and
// a demoted manager gives it up.
func (s *CAServer) RenewNodeCertificate(ctx context.Context, req *swarmpb.RenewNodeCertificateRequest) (*swarmpb.IssueNodeCertificateResponse, error) {
	id, err := ca.PeerIdentity(ctx)
	if err != nil {
		return nil, err
	}
	c, root, err := s.cluster()
	if err != nil {
		return nil, err
	}
	var node *swarmpb.Node
	s.Store.View(func(tx state.ReadTx) { node = tx.GetNode(id.NodeID) })
	if node == nil {
		return nil, Status(deniedf("node %s has been removed from the cluster", id.NodeID))
	}
	role := node.GetSpec().GetDesiredRole()
	cert, err := root.IssueNodeCert(req.CsrPem, id.NodeID, c.Id, role)
	if err != nil {
		return nil, Status(invalidf("cannot sign the certificate request: %v", err))
	}
	return &swarmpb.IssueNodeCertificateResponse{
		NodeId: id.NodeID, ClusterId: c.Id, Role: role, CertPem: cert,
		RootCaPem: c.RootCa.CertPem, Managers: managerAddrs(s.Raft),
	}, nil
}

func (s *CAServer) relayIssue(ctx context.Context, req *swarmpb.IssueNodeCertificateRequest) (*swarmpb.IssueNodeCertificateResponse, error) {
	_, leader := s.Raft.Leader()
	if leader == "" || s.Dialer == nil {
		return nil, status.Error(codes.Unavailable, "no leader is known to check the join token; try again")
	}
	conn, err := s.Dialer.Conn(leader)
	if err != nil {
		return nil, Status(err)
	}
	return swarmpb.NewCAClient(conn).IssueNodeCertificate(ctx, req)
}
