package node_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/raft"
	"google.golang.org/grpc/codes"
)

// savedCreds loads a member's certificate as it is on disk now; the copy
// keeps working for the test after the member renews its own.
func savedCreds(t *testing.T, m *testcluster.Member) *ca.Creds {
	t.Helper()
	creds, err := ca.LoadCreds(filepath.Join(m.Dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// raftVoteTransport is a Raft transport that dials with creds, to speak
// Raft to managers as the holder of those credentials would.
func raftVoteTransport(t *testing.T, creds *ca.Creds) *hraft.NetworkTransport {
	t.Helper()
	self, err := net.ResolveTCPAddr("tcp", "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	sl := raft.NewStreamLayer(self, func() *tls.Config { return creds.ClientTLSConfig(ca.ALPNRaft) })
	trans := hraft.NewNetworkTransportWithConfig(&hraft.NetworkTransportConfig{Stream: sl, MaxPool: 1, Timeout: 5 * time.Second})
	t.Cleanup(func() { trans.Close() })
	return trans
}

// requestVote sends a harmless RequestVote (term 0: stale, never granted)
// in the name of creds' node; a manager that accepts the connection answers
// it, one that refuses closes the connection.
func requestVote(trans *hraft.NetworkTransport, creds *ca.Creds, target *testcluster.Member) error {
	id := creds.Identity().NodeID
	req := &hraft.RequestVoteRequest{
		RPCHeader: hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax, ID: []byte(id), Addr: []byte("127.0.0.1:1")},
		Term:      0,
	}
	var resp hraft.RequestVoteResponse
	return trans.RequestVote(hraft.ServerID(target.NodeID()), hraft.ServerAddress(target.Addr), req, &resp)
}

// openRaftConn opens a Raft connection with creds and reports whether the
// server keeps it open (a read times out) or closes it.
func openRaftConn(ctx context.Context, t *testing.T, creds *ca.Creds, addr string) net.Conn {
	t.Helper()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: creds.ClientTLSConfig(ca.ALPNRaft)}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil // refused during the handshake: as good as closed
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connClosed reads from c until timeout and reports whether the server
// closed it (false: still open).
func connClosed(c net.Conn, timeout time.Duration) bool {
	if c == nil {
		return true
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func voters(t *testing.T, m *testcluster.Member) map[string]bool {
	t.Helper()
	members, err := m.Node.Manager().Raft().Members()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, x := range members {
		out[x.ID] = x.Voter
	}
	return out
}

// TestRevokedManagerCredentials: a demoted manager's saved certificate,
// and then the same certificate of the removed node, no longer reads or
// writes anything, nor speaks Raft, on the leader or on a follower; an
// open Raft connection made with it is closed.
func TestRevokedManagerCredentials(t *testing.T) {
	c := testcluster.New(t, 3, 0, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 90*time.Second)
	m1, m2, m3 := c.Get("m1"), c.Get("m2"), c.Get("m3")
	m3ID := m3.NodeID()
	old := savedCreds(t, m3)
	if old.Identity().Role != swarmpb.NodeRole_NODE_ROLE_MANAGER {
		t.Fatalf("m3's certificate role %v", old.Identity().Role)
	}

	// While m3 is a manager its certificate works: the checks below are
	// about the cluster state, not the certificate.
	testutil.Eventually(t, 20*time.Second, func() error { // on the leader, whichever it is
		conn := dialManager(t, c.Leader(10*time.Second).Addr, old.ClientTLSConfig("h2"))
		_, err := swarmpb.NewControlClient(conn).ListNodes(ctx, &swarmpb.ListNodesRequest{})
		return err
	})
	trans := raftVoteTransport(t, old)
	if err := requestVote(trans, old, m2); err != nil {
		t.Fatalf("RequestVote as the manager m3: %v", err)
	}
	open := openRaftConn(ctx, t, old, m1.Addr)
	if connClosed(open, 300*time.Millisecond) {
		t.Fatal("a raft connection of the manager m3 was closed")
	}

	wrk := swarmpb.NodeRole_NODE_ROLE_WORKER
	if _, err := c.Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "m3", DesiredRole: &wrk}); err != nil {
		t.Fatalf("demote m3: %v", err)
	}
	// The open Raft connection is closed within about a second.
	start := time.Now()
	testutil.Eventually(t, 5*time.Second, func() error {
		if !connClosed(open, 50*time.Millisecond) {
			return errors.New("the demoted manager's raft connection is still open")
		}
		return nil
	})
	t.Logf("open raft connection closed %v after the demotion", time.Since(start))
	testutil.Eventually(t, 20*time.Second, func() error {
		if _, ok := voters(t, m1)[m3ID]; ok {
			return errors.New("m3 is still in the raft configuration")
		}
		if m3.Node.Manager() != nil {
			return errors.New("m3 still runs its manager")
		}
		return nil
	})

	check := func(stage string) {
		t.Helper()
		for _, target := range []*testcluster.Member{m1, m2} { // the leader and a follower, in either order
			conn := dialManager(t, target.Addr, old.ClientTLSConfig("h2"))
			what := fmt.Sprintf("%s, %s", stage, target.Name)
			_, err := swarmpb.NewControlClient(conn).ListNodes(ctx, &swarmpb.ListNodesRequest{})
			wantStatus(t, what+": ListNodes", err, codes.PermissionDenied, m3ID)
			_, err = swarmpb.NewControlClient(conn).GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_MANAGER})
			wantStatus(t, what+": GetJoinToken", err, codes.PermissionDenied, m3ID)
			_, err = swarmpb.NewRaftMembershipClient(conn).Forward(ctx, &swarmpb.ForwardRequest{Command: []byte{}})
			wantStatus(t, what+": Forward", err, codes.PermissionDenied, m3ID)
			_, err = swarmpb.NewRaftMembershipClient(conn).Join(ctx, &swarmpb.RaftJoinRequest{Addr: "127.0.0.1:1"})
			if target.Node.Manager().Raft().IsLeader() { // followers answer "not the leader"
				wantStatus(t, what+": raft Join", err, codes.PermissionDenied, m3ID)
			} else if err == nil {
				t.Fatalf("%s: raft Join with the old certificate succeeded", what)
			}
			if !connClosed(openRaftConn(ctx, t, old, target.Addr), 5*time.Second) {
				t.Fatalf("%s: a raft connection with the old certificate was left open", what)
			}
			if err := requestVote(raftVoteTransport(t, old), old, target); err == nil {
				t.Fatalf("%s: RequestVote with the old certificate was answered", what)
			}
		}
	}
	check("demoted")

	// Removed: the same certificate stays refused (now the node is gone).
	testutil.Eventually(t, 10*time.Second, func() error {
		_, err := c.Control().RemoveNode(ctx, &swarmpb.RemoveNodeRequest{Node: m3ID, Force: true})
		return err
	})
	check("removed")
	conn := dialManager(t, m1.Addr, old.ClientTLSConfig("h2"))
	_, err := swarmpb.NewControlClient(conn).ListNodes(ctx, &swarmpb.ListNodesRequest{})
	wantStatus(t, "removed: ListNodes", err, codes.PermissionDenied, "removed")

	// The cluster is unharmed.
	if _, err := c.Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "m2", LabelAdd: map[string]string{"still": "writable"}}); err != nil {
		t.Fatalf("write after the removal: %v", err)
	}
}

// recvUntilError reads a stream until it fails and returns the error.
func recvUntilError[T any](recv func() (T, error)) <-chan error {
	out := make(chan error, 1)
	go func() {
		for {
			if _, err := recv(); err != nil {
				out <- err
				return
			}
		}
	}()
	return out
}

// TestRemovedWorkerStreams: a removed worker's open Session and Endpoints
// streams end within about a second of `node rm --force`, and new ones
// are refused.
func TestRemovedWorkerStreams(t *testing.T) {
	c := testcluster.New(t, 1, 1, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	m1, w1 := c.Get("m1"), c.Get("w1")
	wID := w1.NodeID()
	creds := savedCreds(t, w1)
	conn := dialManager(t, m1.Addr, creds.ClientTLSConfig("h2"))
	disp := swarmpb.NewDispatcherClient(conn)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sess swarmpb.Dispatcher_SessionClient
	var eps swarmpb.Dispatcher_EndpointsClient
	testutil.Eventually(t, 10*time.Second, func() error { // the leader's dispatcher may still be starting
		var err error
		if sess, err = disp.Session(sctx, &swarmpb.SessionRequest{}); err != nil {
			return err
		}
		if _, err = sess.Recv(); err != nil {
			return err
		}
		if eps, err = disp.Endpoints(sctx, &swarmpb.EndpointsRequest{}); err != nil {
			return err
		}
		_, err = eps.Recv()
		return err
	})
	sessDone := recvUntilError(sess.Recv)
	epsDone := recvUntilError(eps.Recv)

	if _, err := c.Control().RemoveNode(ctx, &swarmpb.RemoveNodeRequest{Node: "w1", Force: true}); err != nil {
		t.Fatalf("node rm --force w1: %v", err)
	}
	removed := time.Now()
	for name, ch := range map[string]<-chan error{"Session": sessDone, "Endpoints": epsDone} {
		select {
		case err := <-ch:
			t.Logf("%s ended %v after the removal: %v", name, time.Since(removed), err)
			wantStatus(t, "open "+name+" after the removal", err, codes.PermissionDenied, "removed")
		case <-time.After(3*time.Second - time.Since(removed)):
			t.Fatalf("the removed worker's open %s stream is still open after %v", name, time.Since(removed))
		}
	}

	// New streams are refused.
	s2, err := disp.Session(ctx, &swarmpb.SessionRequest{})
	if err == nil {
		_, err = s2.Recv()
	}
	wantStatus(t, "new Session of the removed worker", err, codes.PermissionDenied, wID)
	e2, err := disp.Endpoints(ctx, &swarmpb.EndpointsRequest{})
	if err == nil {
		_, err = e2.Recv()
	}
	wantStatus(t, "new Endpoints of the removed worker", err, codes.PermissionDenied, wID)
	_, err = disp.UpdateTaskStatus(ctx, &swarmpb.UpdateTaskStatusRequest{})
	wantStatus(t, "UpdateTaskStatus of the removed worker", err, codes.PermissionDenied, wID)
	_, csr, err := ca.GenerateKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	_, err = swarmpb.NewCAClient(conn).RenewNodeCertificate(ctx, &swarmpb.RenewNodeCertificateRequest{CsrPem: csr})
	wantStatus(t, "renewal by the removed worker", err, codes.PermissionDenied, "removed")
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestJoinManagerUnreachableOverRaft: a manager whose advertised address
// does not answer is not made a voter: its join fails with an error that
// names the address, nothing is left behind, and the 1-manager cluster
// keeps its quorum and accepts writes.
func TestJoinManagerUnreachableOverRaft(t *testing.T) {
	c := testcluster.New(t, 1, 0, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 90*time.Second)
	m1 := c.Get("m1")
	tok, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_MANAGER})
	if err != nil {
		t.Fatal(err)
	}
	bad := closedAddr(t)
	x := c.Add("x")
	// x listens on its own address but advertises one where nothing
	// listens, as a manager behind a firewall or with a wrong
	// --advertise-addr would.
	_, err = x.Local().Join(ctx, &swarmpb.JoinRequest{Token: tok.Token, RemoteAddr: m1.Addr, AdvertiseAddr: bad, ListenAddr: x.Addr})
	t.Logf("join error: %v", err)
	wantStatus(t, "join with an unreachable advertise address", err, codes.FailedPrecondition, "did not answer over Raft", bad)
	assertPristine(t, ctx, x)

	if v := voters(t, m1); len(v) != 1 || !v[m1.NodeID()] {
		t.Fatalf("raft configuration after the failed join: %v", v)
	}
	if _, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER, Rotate: true}); err != nil {
		t.Fatalf("write after the failed join: %v", err)
	}
}

// TestPromoteWorkerUnreachableOverRaft: promoting a worker whose address
// does not answer over Raft never makes it a voter, and the cluster stays
// writable while the promotion is tried.
func TestPromoteWorkerUnreachableOverRaft(t *testing.T) {
	// Heartbeats every 500 ms (Down after 1.5 s of silence): the test is
	// about the promotion not stopping them, not about their timing on a
	// loaded machine.
	c := testcluster.New(t, 1, 0, testcluster.Options{HeartbeatPeriod: 500 * time.Millisecond})
	defer stopMembers(c)
	ctx := secCtx(t, 90*time.Second)
	m1 := c.Get("m1")
	tok, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		t.Fatal(err)
	}
	w := c.Add("w1")
	// Stopped before m1, which its promotion attempts keep calling.
	defer w.Stop()
	bad := closedAddr(t)
	if _, err := w.Local().Join(ctx, &swarmpb.JoinRequest{Token: tok.Token, RemoteAddr: m1.Addr, AdvertiseAddr: bad, ListenAddr: w.Addr}); err != nil {
		t.Fatalf("join w1 as a worker: %v", err)
	}
	wID := w.NodeID()
	mgr := swarmpb.NodeRole_NODE_ROLE_MANAGER
	if _, err := c.Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "w1", DesiredRole: &mgr}); err != nil {
		t.Fatalf("promote w1: %v", err)
	}
	promoted := time.Now()
	// The promotion is attempted: w1 is added as a non-voter...
	testutil.Eventually(t, 20*time.Second, func() error {
		if _, ok := voters(t, m1)[wID]; !ok {
			return errors.New("w1 not in the raft configuration yet")
		}
		return nil
	})
	t.Logf("w1 added to the raft configuration %v after the promotion", time.Since(promoted))
	// ...and over a whole join wait (5 s with the test timings) and more,
	// it never votes, and writes go on.
	// Sampled every 250 ms over more than a whole join wait (5 s).
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	until := time.Now().Add(7 * time.Second)
	samples, down := 0, 0
	for i := 0; time.Now().Before(until); i++ {
		<-tick.C
		if voters(t, m1)[wID] {
			t.Fatal("the unreachable w1 was made a voter")
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.Control().UpdateNode(wctx, &swarmpb.UpdateNodeRequest{Node: "m1", LabelAdd: map[string]string{"n": fmt.Sprint(i)}})
		cancel()
		if err != nil {
			t.Fatalf("write %d while w1's promotion is tried: %v", i, err)
		}
		// Its agent keeps heartbeating while the promotion waits (when
		// the promotion blocked the heartbeats, w1 was Down most of the
		// time; a loaded machine may miss the odd one).
		st, err := secStatuses(ctx, c.Control())
		if err != nil {
			t.Fatal(err)
		}
		samples++
		if st["w1"] != swarmpb.NodeStatus_NODE_STATUS_READY {
			down++
		}
	}
	t.Logf("w1 was not Ready in %d of %d samples", down, samples)
	if down*4 > samples {
		t.Fatalf("w1 was not Ready in %d of %d samples while its promotion was tried", down, samples)
	}
}
