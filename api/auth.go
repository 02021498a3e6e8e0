package api

import (
	"context"
	"strings"

	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
)

// access says which certificate a method needs on the TCP port.
type access int

const (
	accessManager access = iota // the default: manager certificate
	accessAnyNode               // any node certificate of this cluster
	accessPublic                // no certificate (joining nodes)
)

func methodAccess(fullMethod string) access {
	switch fullMethod {
	case swarmpb.CA_GetRootCACertificate_FullMethodName, swarmpb.CA_IssueNodeCertificate_FullMethodName:
		return accessPublic
	case swarmpb.CA_RenewNodeCertificate_FullMethodName:
		return accessAnyNode
	}
	if strings.HasPrefix(fullMethod, "/"+swarmpb.Dispatcher_ServiceDesc.ServiceName+"/") {
		return accessAnyNode
	}
	return accessManager
}

func authorize(ctx context.Context, fullMethod string) error {
	switch methodAccess(fullMethod) {
	case accessPublic:
		return nil
	case accessAnyNode:
		_, err := ca.RequireRole(ctx)
		return err
	default:
		_, err := ca.RequireRole(ctx, swarmpb.NodeRole_NODE_ROLE_MANAGER)
		return err
	}
}

// ServerOptions returns the interceptors that enforce per-service
// certificate roles on the TCP port: a worker's certificate is refused by
// Control and RaftMembership; only two CA calls accept no certificate.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := authorize(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := authorize(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}
