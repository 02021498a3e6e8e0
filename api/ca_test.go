package api

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// followerRaft is a follower whose leader is reached through a Dialer.
type followerRaft struct{ storeRaft }

func (r *followerRaft) IsLeader() bool           { return false }
func (r *followerRaft) Leader() (string, string) { return "leader", "leader:2377" }

type bufDialer struct{ conn *grpc.ClientConn }

func (d bufDialer) Conn(string) (*grpc.ClientConn, error) { return d.conn, nil }

// leaderCA answers like a leader whose tokens were rotated.
type leaderCA struct {
	swarmpb.UnimplementedCAServer
	calls int
}

func (l *leaderCA) IssueNodeCertificate(context.Context, *swarmpb.IssueNodeCertificateRequest) (*swarmpb.IssueNodeCertificateResponse, error) {
	l.calls++
	return nil, status.Error(codes.PermissionDenied, "invalid join token: it was rotated or never issued")
}

// A follower's replica may still hold a rotated token; the follower must
// not judge the token itself but relay the request to the leader.
func TestFollowerRelaysJoinToLeader(t *testing.T) {
	root, err := ca.NewRootCA()
	if err != nil {
		t.Fatal(err)
	}
	stale, err := ca.GenerateJoinToken(root.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	st := state.New()
	r := &followerRaft{storeRaft{store: st}}
	if _, err := r.Apply(context.Background(), state.Batch(state.Create(&swarmpb.Cluster{Id: "c1",
		RootCa:     &swarmpb.RootCA{CertPem: root.CertPEM, KeyPem: root.KeyPEM},
		JoinTokens: &swarmpb.JoinTokens{Worker: stale, Manager: "x"}}))); err != nil {
		t.Fatal(err)
	}

	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	leader := &leaderCA{}
	swarmpb.RegisterCAServer(srv, leader)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///leader", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	_, csr, err := ca.GenerateKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := &CAServer{Store: st, Raft: r, Dialer: bufDialer{conn}}
	_, err = s.IssueNodeCertificate(ctx, &swarmpb.IssueNodeCertificateRequest{Token: stale, CsrPem: csr, Hostname: "w9"})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "rotated") || leader.calls != 1 {
		t.Fatalf("follower answered %v itself (leader calls %d); it must relay to the leader", err, leader.calls)
	}
	var nodes int
	st.View(func(tx state.ReadTx) { nodes = tx.NodeCount() })
	if nodes != 0 {
		t.Fatalf("a node was registered with a stale token")
	}
}
