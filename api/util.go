package api

import (
	"context"
	"fmt"
	"sort"
	"strconv"
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

// findNode resolves a user's NODE argument. A reference is, in order, an
// exact node ID, an exact hostname or a unique ID prefix; an exact ID always
// wins. Hostnames are chosen by the nodes themselves, so a reference that
// could mean more than one node by these rules (the hostname of one node and
// a prefix of another's ID, two nodes' hostname, a prefix of two IDs) is
// refused with the candidates listed, rather than picking one: otherwise a
// worker calling itself like the start of another node's ID would be the
// node that 'node promote PREFIX' promotes.
func findNode(tx state.ReadTx, ref string) (*swarmpb.Node, error) {
	if ref == "" {
		return nil, invalidf("a node ID or hostname is required")
	}
	if n := tx.GetNode(ref); n != nil {
		return n, nil
	}
	var matches []*swarmpb.Node
	for _, n := range tx.ListNodes() {
		if n.GetDescription().GetHostname() == ref || strings.HasPrefix(n.Id, ref) {
			matches = append(matches, n)
		}
	}
	switch len(matches) {
	case 0:
		return nil, notFoundf("node %s not found", ref)
	case 1:
		return matches[0], nil
	}
	sort.Slice(matches, func(i, j int) bool { return matches[i].Id < matches[j].Id })
	const listed = 10
	var b strings.Builder
	for i, n := range matches {
		if i == listed {
			fmt.Fprintf(&b, ", and %d more", len(matches)-listed)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (hostname %s)", n.Id, strconv.Quote(n.GetDescription().GetHostname()))
	}
	return nil, invalidf("node reference %s is ambiguous: it matches %d nodes by hostname or ID prefix: %s; use the full node ID",
		strconv.Quote(ref), len(matches), b.String())
}
