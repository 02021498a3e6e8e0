package api

import (
	"context"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"strings"
	"sync"

	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
)

// access says what a method needs on the TCP port: a certificate of some
// role, and (through the Authorizer) a current right to use it.
type access int

const (
	accessManager     access = iota // the default: manager certificate, node meant to be a manager
	accessAnyNode                   // any node certificate of this cluster, node still in it
	accessNodeCert                  // any node certificate; the handler deals with removed nodes
	accessManagerCert               // manager certificate; the handler checks the node on the leader
	accessPublic                    // no certificate (joining nodes)
)

func methodAccess(fullMethod string) access {
	switch fullMethod {
	case swarmpb.CA_GetRootCACertificate_FullMethodName, swarmpb.CA_IssueNodeCertificate_FullMethodName:
		return accessPublic
	case healthpb.Health_Check_FullMethodName, healthpb.Health_Watch_FullMethodName, healthpb.Health_List_FullMethodName:
		// The standard health service tells only SERVING or NOT_SERVING
		// (the manager knows a leader), so that load balancers and
		// probes need no node certificate.
		return accessPublic
	case swarmpb.CA_RenewNodeCertificate_FullMethodName:
		return accessAnyNode
	case swarmpb.Dispatcher_Heartbeat_FullMethodName:
		// A removed node's heartbeat is answered "removed" and writes
		// nothing: that is how its agent learns to stop.
		return accessNodeCert
	case swarmpb.RaftMembership_Join_FullMethodName:
		// Served by the leader only, which checks the caller's node
		// against its own state; a follower, whose replica may not have
		// the node yet, only answers "not the leader".
		return accessManagerCert
	}
	if strings.HasPrefix(fullMethod, "/"+swarmpb.Dispatcher_ServiceDesc.ServiceName+"/") {
		return accessAnyNode
	}
	return accessManager
}

// authorize checks the caller's certificate for the method, then asks az
// whether the cluster state still honours it. It returns the identity and
// the scope to keep watching (0: nothing to watch).
func authorize(ctx context.Context, az *Authorizer, fullMethod string) (ca.Identity, Scope, error) {
	var id ca.Identity
	var err error
	var scope Scope
	switch methodAccess(fullMethod) {
	case accessPublic:
		return ca.Identity{}, 0, nil
	case accessNodeCert:
		id, err = ca.RequireRole(ctx)
		return id, 0, err
	case accessManagerCert:
		id, err = ca.RequireRole(ctx, swarmpb.NodeRole_NODE_ROLE_MANAGER)
		return id, 0, err
	case accessAnyNode:
		id, err = ca.RequireRole(ctx)
		scope = ScopeNode
	default:
		id, err = ca.RequireRole(ctx, swarmpb.NodeRole_NODE_ROLE_MANAGER)
		scope = ScopeManager
	}
	if err != nil {
		return id, 0, err
	}
	if az == nil {
		return id, 0, nil
	}
	if err := az.Check(id, scope); err != nil {
		return id, 0, Status(err)
	}
	return id, scope, nil
}

// ServerOptions returns the interceptors that enforce access on the TCP
// port: the certificate's role per service (a worker's certificate is
// refused by Control and RaftMembership; only two CA calls accept no
// certificate), and, through az, the node's current standing in the
// cluster. Open streams end with PermissionDenied as soon as az revokes
// the caller's access. With az nil only certificates are checked.
func ServerOptions(az *Authorizer) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if _, _, err := authorize(ctx, az, info.FullMethod); err != nil {
				return nil, err
			}
			if strings.HasPrefix(info.FullMethod, "/raftswarm.v1.Control/") {
				ctx = withIncomingRequestID(ctx) // requests.go
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			id, scope, err := authorize(ss.Context(), az, info.FullMethod)
			if err != nil {
				return err
			}
			if scope == 0 {
				return h(srv, ss)
			}
			ctx, cancel := context.WithCancelCause(ss.Context())
			defer cancel(nil)
			release, err := az.Admit(id, scope, func(why error) { cancel(revokedError{why}) })
			if err != nil {
				return Status(err)
			}
			defer release()
			hs := &heldStream{ServerStream: ss, ctx: ctx, clientStreams: info.IsClientStream}
			err = h(srv, hs)
			if r, ok := context.Cause(ctx).(revokedError); ok {
				return Status(r.err)
			}
			return err
		}),
	}
}

// revokedError is the cancel cause of a stream whose access was revoked.
type revokedError struct{ err error }

func (e revokedError) Error() string { return e.err.Error() }

// heldStream is a server stream whose context ends when the caller's
// access is revoked, so that handlers waiting on it return. A handler
// blocked in RecvMsg is released too: the receive runs aside and is
// abandoned on revocation (the stream ends when the handler returns, and
// the abandoned receive with it).
type heldStream struct {
	grpc.ServerStream
	ctx           context.Context
	clientStreams bool

	mu      sync.Mutex
	revoked bool
}

func (s *heldStream) Context() context.Context { return s.ctx }

func (s *heldStream) RecvMsg(m any) error {
	if !s.clientStreams {
		return s.ServerStream.RecvMsg(m)
	}
	s.mu.Lock()
	revoked := s.revoked
	s.mu.Unlock()
	if revoked {
		return s.revokedErr()
	}
	done := make(chan error, 1)
	go func() { done <- s.ServerStream.RecvMsg(m) }()
	select {
	case err := <-done:
		return err
	case <-s.ctx.Done():
		if _, ok := context.Cause(s.ctx).(revokedError); !ok {
			// The stream itself ended: the receive returns too.
			return <-done
		}
		s.mu.Lock()
		s.revoked = true
		s.mu.Unlock()
		return s.revokedErr()
	}
}

func (s *heldStream) revokedErr() error {
	if r, ok := context.Cause(s.ctx).(revokedError); ok {
		return Status(r.err)
	}
	return Status(s.ctx.Err())
}
