package api

import (
	"context"
	"fmt"
	"strings"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc"
)

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// Raft is what the servers need from the replicated log.
type Raft interface {
	Apply(ctx context.Context, b *swarmpb.StoreBatch) (uint64, error)
	ApplyCommand(ctx context.Context, cmd []byte) (uint64, error)
	ReadBarrier(ctx context.Context) error
	IsLeader() bool
	Leader() (id, addr string)
	Members() ([]raft.Member, error)
	Unreachable(id string) bool
	AddVoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
	TransferLeadership() error
}

// Dialer returns a mutual-TLS client connection to another manager.
type Dialer interface {
	Conn(addr string) (*grpc.ClientConn, error)
}

// managerAddrs lists the voters' addresses, leader first.
func managerAddrs(r Raft) []string {
	members, err := r.Members()
	if err != nil {
		return nil
	}
	_, leader := r.Leader()
	out := make([]string, 0, len(members))
	if leader != "" {
		out = append(out, leader)
	}
	for _, m := range members {
		if m.Voter && m.Addr != leader {
			out = append(out, m.Addr)
		}
	}
	return out
}

// findNode resolves a user's NODE argument: an ID, a unique ID prefix or a
// hostname.
func findNode(tx state.ReadTx, ref string) (*swarmpb.Node, error) {
	if ref == "" {
		return nil, invalidf("a node ID or hostname is required")
	}
	if n := tx.GetNode(ref); n != nil {
		return n, nil
	}
	var byPrefix, byName []*swarmpb.Node
	for _, n := range tx.ListNodes() {
		if strings.HasPrefix(n.Id, ref) {
			byPrefix = append(byPrefix, n)
		}
		if n.GetDescription().GetHostname() == ref {
			byName = append(byName, n)
		}
	}
	switch {
	case len(byName) == 1:
		return byName[0], nil
	case len(byName) > 1:
		return nil, invalidf("node %q is ambiguous: %d nodes have that hostname; use the node ID", ref, len(byName))
	case len(byPrefix) == 1:
		return byPrefix[0], nil
	case len(byPrefix) > 1:
		return nil, invalidf("node %q is ambiguous: %d node IDs start with it; give more of the ID", ref, len(byPrefix))
	}
	return nil, notFoundf("node %s not found", ref)
}

func action(kind swarmpb.StoreAction_Kind, obj any) *swarmpb.StoreAction {
	a := &swarmpb.StoreAction{Kind: kind}
	switch o := obj.(type) {
	case *swarmpb.Cluster:
		a.Target = &swarmpb.StoreAction_Cluster{Cluster: o}
	case *swarmpb.Node:
		a.Target = &swarmpb.StoreAction_Node{Node: o}
	case *swarmpb.Service:
		a.Target = &swarmpb.StoreAction_Service{Service: o}
	case *swarmpb.Task:
		a.Target = &swarmpb.StoreAction_Task{Task: o}
	case *swarmpb.Secret:
		a.Target = &swarmpb.StoreAction_Secret{Secret: o}
	default:
		panic(fmt.Sprintf("store action on unsupported type %T", obj))
	}
	return a
}

// Batch builds a store batch from actions.
func Batch(actions ...*swarmpb.StoreAction) *swarmpb.StoreBatch {
	return &swarmpb.StoreBatch{Actions: actions}
}

// Create, Update and Delete build the store actions of a batch.
func Create(obj any) *swarmpb.StoreAction { return action(swarmpb.StoreAction_KIND_CREATE, obj) }
func Update(obj any) *swarmpb.StoreAction { return action(swarmpb.StoreAction_KIND_UPDATE, obj) }
func Delete(obj any) *swarmpb.StoreAction { return action(swarmpb.StoreAction_KIND_DELETE, obj) }
