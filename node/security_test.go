package node_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

func secCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// wantStatus fails unless err is a status with code and a message holding every part.
func wantStatus(t *testing.T, what string, err error, code codes.Code, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v", what, code)
	}
	s, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: %v is not a status", what, err)
	}
	if s.Code() != code {
		t.Fatalf("%s: code %v (%q), want %v", what, s.Code(), s.Message(), code)
	}
	for _, p := range parts {
		if !strings.Contains(s.Message(), p) {
			t.Fatalf("%s: message %q does not mention %q", what, s.Message(), p)
		}
	}
}

// secNodeCount is the number of nodes the cluster lists.
func secNodeCount(ctx context.Context, c swarmpb.ControlClient) (int, error) {
	resp, err := c.ListNodes(ctx, &swarmpb.ListNodesRequest{})
	if err != nil {
		return 0, err
	}
	return len(resp.Nodes), nil
}

func secStatuses(ctx context.Context, c swarmpb.ControlClient) (map[string]swarmpb.NodeStatus, error) {
	resp, err := c.ListNodes(ctx, &swarmpb.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	out := map[string]swarmpb.NodeStatus{}
	for _, n := range resp.Nodes {
		out[n.Node.GetDescription().GetHostname()] = n.Node.Status
	}
	return out, nil
}

// assertPristine checks that a member that failed to join kept nothing.
func assertPristine(t *testing.T, ctx context.Context, m *testcluster.Member) {
	t.Helper()
	info, err := m.Local().Info(ctx, &swarmpb.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.State != "inactive" || info.NodeId != "" {
		t.Fatalf("%s after a failed join: state %q, node %q", m.Name, info.State, info.NodeId)
	}
	for _, p := range []string{"node.json", "certs", "raft"} {
		if _, err := os.Stat(filepath.Join(m.Dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after a failed join: %s left behind (stat: %v)", m.Name, p, err)
		}
	}
}

func TestJoinTokenRotation(t *testing.T) {
	c := testcluster.New(t, 1, 1, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	m1 := c.Get("m1")

	old, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		t.Fatal(err)
	}
	mgrTok, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_MANAGER})
	if err != nil {
		t.Fatal(err)
	}
	rot, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER, Rotate: true})
	if err != nil {
		t.Fatal(err)
	}
	if rot.Token == old.Token {
		t.Fatal("rotation returned the old token")
	}
	// Reading it again returns the rotated token; the manager token is untouched.
	again, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		t.Fatal(err)
	}
	if again.Token != rot.Token {
		t.Fatal("the rotated worker token did not stick")
	}
	if mt, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_MANAGER}); err != nil || mt.Token != mgrTok.Token {
		t.Fatalf("rotating the worker token changed the manager token (err %v)", err)
	}

	w2 := c.Add("w2")
	_, err = w2.Local().Join(ctx, &swarmpb.JoinRequest{Token: old.Token, RemoteAddr: m1.Addr, AdvertiseAddr: w2.Addr})
	wantStatus(t, "join with the rotated-out token", err, codes.PermissionDenied, "token")
	assertPristine(t, ctx, w2)
	if n, err := secNodeCount(ctx, c.Control()); err != nil || n != 2 {
		t.Fatalf("node count after a refused join: %d (err %v), want 2", n, err)
	}

	// The new token works on the same (clean) member.
	resp, err := w2.Local().Join(ctx, &swarmpb.JoinRequest{Token: rot.Token, RemoteAddr: m1.Addr, AdvertiseAddr: w2.Addr})
	if err != nil {
		t.Fatalf("join with the new token: %v", err)
	}
	if resp.Role != swarmpb.NodeRole_NODE_ROLE_WORKER {
		t.Fatalf("joined as %v", resp.Role)
	}
	// Nodes joined before the rotation stay Ready, and the new one becomes Ready.
	testutil.Eventually(t, 10*time.Second, func() error {
		st, err := secStatuses(ctx, c.Control())
		if err != nil {
			return err
		}
		for _, h := range []string{"m1", "w1", "w2"} {
			if st[h] != swarmpb.NodeStatus_NODE_STATUS_READY {
				return fmt.Errorf("%s is %v (%v)", h, st[h], st)
			}
		}
		if len(st) != 3 {
			return fmt.Errorf("nodes: %v", st)
		}
		return nil
	})
}

func TestJoinWithBadTokens(t *testing.T) {
	c := testcluster.New(t, 1, 0, testcluster.Options{})
	defer stopMembers(c)
	other := testcluster.New(t, 1, 0, testcluster.Options{})
	defer stopMembers(other)
	ctx := secCtx(t, 60*time.Second)
	m1 := c.Get("m1")

	x := c.Add("x")
	_, err := x.Local().Join(ctx, &swarmpb.JoinRequest{Token: "SWMTKN-1-abc", RemoteAddr: m1.Addr, AdvertiseAddr: x.Addr})
	wantStatus(t, "join with a malformed token", err, codes.InvalidArgument, "invalid join token")
	assertPristine(t, ctx, x)

	foreign, err := other.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		t.Fatal(err)
	}
	_, err = x.Local().Join(ctx, &swarmpb.JoinRequest{Token: foreign.Token, RemoteAddr: m1.Addr, AdvertiseAddr: x.Addr})
	wantStatus(t, "join with another cluster's token", err, codes.PermissionDenied, "does not match")
	assertPristine(t, ctx, x)

	// Same for a manager token of the other cluster.
	foreignMgr, err := other.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_MANAGER})
	if err != nil {
		t.Fatal(err)
	}
	_, err = x.Local().Join(ctx, &swarmpb.JoinRequest{Token: foreignMgr.Token, RemoteAddr: m1.Addr, AdvertiseAddr: x.Addr})
	wantStatus(t, "join with another cluster's manager token", err, codes.PermissionDenied, "does not match")
	assertPristine(t, ctx, x)

	// A well-formed token with this cluster's digest but an unknown secret.
	good, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		t.Fatal(err)
	}
	forged := good.Token[:len(good.Token)-25] + strings.Repeat("0", 25)
	_, err = x.Local().Join(ctx, &swarmpb.JoinRequest{Token: forged, RemoteAddr: m1.Addr, AdvertiseAddr: x.Addr})
	wantStatus(t, "join with a forged secret", err, codes.PermissionDenied, "token")
	assertPristine(t, ctx, x)

	for _, cc := range []*testcluster.Cluster{c, other} {
		if n, err := secNodeCount(ctx, cc.Control()); err != nil || n != 1 {
			t.Fatalf("node count: %d (err %v), want 1", n, err)
		}
	}
}

func TestJoinOrInitWhenAlreadyInCluster(t *testing.T) {
	c := testcluster.New(t, 1, 1, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	m1, w1 := c.Get("m1"), c.Get("w1")
	tok, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		t.Fatal(err)
	}
	w1ID := w1.NodeID()
	_, err = w1.Local().Join(ctx, &swarmpb.JoinRequest{Token: tok.Token, RemoteAddr: m1.Addr, AdvertiseAddr: w1.Addr})
	wantStatus(t, "join twice", err, codes.FailedPrecondition, "already part of a swarm")
	_, err = m1.Local().Join(ctx, &swarmpb.JoinRequest{Token: tok.Token, RemoteAddr: m1.Addr, AdvertiseAddr: m1.Addr})
	wantStatus(t, "join on a manager", err, codes.FailedPrecondition, "already part of a swarm")
	_, err = m1.Local().Init(ctx, &swarmpb.InitRequest{AdvertiseAddr: m1.Addr})
	wantStatus(t, "init on a manager", err, codes.FailedPrecondition, "already part of a swarm")
	_, err = w1.Local().Init(ctx, &swarmpb.InitRequest{AdvertiseAddr: w1.Addr})
	wantStatus(t, "init on a worker", err, codes.FailedPrecondition, "already part of a swarm")

	if w1.NodeID() != w1ID {
		t.Fatalf("w1's identity changed")
	}
	if n, err := secNodeCount(ctx, c.Control()); err != nil || n != 2 {
		t.Fatalf("node count %d (err %v), want 2", n, err)
	}
}

func TestJoinUnreachableManager(t *testing.T) {
	c := testcluster.New(t, 1, 0, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	tok, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	x := c.Add("x")
	start := time.Now()
	_, err = x.Local().Join(ctx, &swarmpb.JoinRequest{Token: tok.Token, RemoteAddr: closed, AdvertiseAddr: x.Addr})
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("join to a closed port took %v", d)
	}
	if err == nil || !strings.Contains(err.Error(), "cannot reach") || !strings.Contains(err.Error(), closed) {
		t.Fatalf("join to a closed port: got %v, want 'cannot reach ... %s'", err, closed)
	}
	assertPristine(t, ctx, x)
}

// dialManager returns a gRPC connection to addr presenting creds (nil: no
// client certificate, server verified against root).
func dialManager(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestWorkerCertificateRefusedByManagerServices(t *testing.T) {
	c := testcluster.New(t, 2, 1, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	workerCreds, err := ca.LoadCreds(filepath.Join(c.Get("w1").Dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	if r := workerCreds.Identity().Role; r != swarmpb.NodeRole_NODE_ROLE_WORKER {
		t.Fatalf("w1's certificate role %v", r)
	}
	mgrCreds, err := ca.LoadCreds(filepath.Join(c.Get("m2").Dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"m1", "m2"} { // the leader and a follower
		addr := c.Get(name).Addr
		wconn := dialManager(t, addr, workerCreds.ClientTLSConfig("h2"))
		_, err := swarmpb.NewControlClient(wconn).ListNodes(ctx, &swarmpb.ListNodesRequest{})
		wantStatus(t, name+": ListNodes with a worker certificate", err, codes.PermissionDenied, "manager")
		_, err = swarmpb.NewControlClient(wconn).GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_MANAGER})
		wantStatus(t, name+": GetJoinToken with a worker certificate", err, codes.PermissionDenied)
		_, err = swarmpb.NewRaftMembershipClient(wconn).Forward(ctx, &swarmpb.ForwardRequest{Command: []byte{}})
		wantStatus(t, name+": Forward with a worker certificate", err, codes.PermissionDenied)
		_, err = swarmpb.NewRaftMembershipClient(wconn).Join(ctx, &swarmpb.RaftJoinRequest{Addr: "127.0.0.1:1"})
		wantStatus(t, name+": raft Join with a worker certificate", err, codes.PermissionDenied)
		// The dispatcher is what a worker certificate is for.
		// (a follower answers FailedPrecondition naming the leader, not PermissionDenied).
		_, err = swarmpb.NewDispatcherClient(wconn).Heartbeat(ctx, &swarmpb.HeartbeatRequest{})
		if err != nil && status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("%s: Heartbeat with a worker certificate: %v", name, err)
		}

		// A Raft connection with a worker certificate is closed by the server.
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: workerCreds.ClientTLSConfig(ca.ALPNRaft)}
		rc, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = rc.Read(make([]byte, 1))
			rc.Close()
			if err == nil {
				t.Fatalf("%s: a raft connection with a worker certificate was served", name)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("%s: a raft connection with a worker certificate was left open", name)
			}
		}

		// With a manager certificate the same connection is handed to Raft
		// and stays open, waiting for an RPC.
		md := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: mgrCreds.ClientTLSConfig(ca.ALPNRaft)}
		mc, err := md.DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("%s: raft connection with a manager certificate: %v", name, err)
		}
		_ = mc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = mc.Read(make([]byte, 1))
		mc.Close()
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("%s: raft connection with a manager certificate: read %v, want a timeout (open connection)", name, err)
		}

		// The manager's certificate is accepted.
		mconn := dialManager(t, addr, mgrCreds.ClientTLSConfig("h2"))
		if _, err := swarmpb.NewControlClient(mconn).ListNodes(ctx, &swarmpb.ListNodesRequest{}); err != nil {
			// A follower may answer not-leader; the leader must answer.
			if name == "m1" || status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("%s: ListNodes with a manager certificate: %v", name, err)
			}
		}

		// No certificate: only the public CA calls answer.
		nconn := dialManager(t, addr, ca.BootstrapTLSConfig(workerCreds.RootPool()))
		root, err := swarmpb.NewCAClient(nconn).GetRootCACertificate(ctx, &swarmpb.GetRootCACertificateRequest{})
		if err != nil {
			t.Fatalf("%s: GetRootCACertificate without a certificate: %v", name, err)
		}
		if string(root.CertPem) != string(workerCreds.RootPEM()) {
			t.Fatalf("%s: served a different root CA", name)
		}
		_, err = swarmpb.NewControlClient(nconn).ListNodes(ctx, &swarmpb.ListNodesRequest{})
		wantStatus(t, name+": ListNodes without a certificate", err, codes.Unauthenticated)
		_, err = swarmpb.NewRaftMembershipClient(nconn).Forward(ctx, &swarmpb.ForwardRequest{})
		wantStatus(t, name+": Forward without a certificate", err, codes.Unauthenticated)
		_, err = swarmpb.NewDispatcherClient(nconn).Heartbeat(ctx, &swarmpb.HeartbeatRequest{})
		wantStatus(t, name+": Heartbeat without a certificate", err, codes.Unauthenticated)
		_, err = swarmpb.NewCAClient(nconn).RenewNodeCertificate(ctx, &swarmpb.RenewNodeCertificateRequest{})
		wantStatus(t, name+": RenewNodeCertificate without a certificate", err, codes.Unauthenticated)
	}
}

func TestPrivateKeyFileModes(t *testing.T) {
	c := testcluster.New(t, 2, 1, testcluster.Options{})
	defer stopMembers(c)
	for _, m := range c.Members {
		for _, f := range []struct {
			path string
			mode os.FileMode
		}{
			{filepath.Join(m.Dir, "certs", ca.NodeKeyFile), 0o600},
			{filepath.Join(m.Dir, "certs"), 0o700 | os.ModeDir},
		} {
			fi, err := os.Stat(f.path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != f.mode {
				t.Errorf("%s: %s has mode %v, want %v", m.Name, f.path, fi.Mode(), f.mode)
			}
		}
	}
}

// logRecorder is a slog handler that remembers messages and passes
// records on to the next handler.
type logRecorder struct {
	next slog.Handler
	mu   *sync.Mutex
	msgs *[]string
}

func newLogRecorder(next slog.Handler) logRecorder {
	return logRecorder{next: next, mu: &sync.Mutex{}, msgs: new([]string)}
}

func (h logRecorder) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }
func (h logRecorder) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.msgs = append(*h.msgs, r.Message)
	h.mu.Unlock()
	return h.next.Handle(ctx, r)
}
func (h logRecorder) WithAttrs(a []slog.Attr) slog.Handler {
	return logRecorder{next: h.next.WithAttrs(a), mu: h.mu, msgs: h.msgs}
}
func (h logRecorder) WithGroup(g string) slog.Handler {
	return logRecorder{next: h.next.WithGroup(g), mu: h.mu, msgs: h.msgs}
}
func (h logRecorder) saw(sub string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range *h.msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

func TestNodeAdminErrors(t *testing.T) {
	var w1Log logRecorder
	c := testcluster.New(t, 1, 2, testcluster.Options{Configure: func(name string, cfg *node.Config) {
		if name == "w1" {
			w1Log = newLogRecorder(cfg.Logger.Handler())
			cfg.Logger = slog.New(w1Log)
		}
	}})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	ctl := c.Control()

	_, err := ctl.GetNode(ctx, &swarmpb.GetNodeRequest{Node: "nope"})
	wantStatus(t, "GetNode nope", err, codes.NotFound, "node nope not found")

	bad := swarmpb.NodeAvailability(42)
	_, err = ctl.UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "w2", Availability: &bad})
	wantStatus(t, "UpdateNode with availability 42", err, codes.InvalidArgument, "availability")
	_, err = ctl.UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "w2", LabelAdd: map[string]string{"": "x"}})
	wantStatus(t, "UpdateNode with an empty label key", err, codes.InvalidArgument)
	_, err = ctl.UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: "nope", LabelAdd: map[string]string{"a": "b"}})
	wantStatus(t, "UpdateNode nope", err, codes.NotFound, "node nope not found")
	_, err = ctl.RemoveNode(ctx, &swarmpb.RemoveNodeRequest{Node: "nope"})
	wantStatus(t, "RemoveNode nope", err, codes.NotFound, "node nope not found")

	_, err = ctl.RemoveNode(ctx, &swarmpb.RemoveNodeRequest{Node: "m1"})
	wantStatus(t, "RemoveNode on a manager", err, codes.FailedPrecondition, "demote")
	_, err = ctl.RemoveNode(ctx, &swarmpb.RemoveNodeRequest{Node: "m1", Force: true})
	wantStatus(t, "RemoveNode --force on a manager", err, codes.FailedPrecondition, "demote")

	testutil.Eventually(t, 10*time.Second, func() error {
		st, err := secStatuses(ctx, ctl)
		if err != nil {
			return err
		}
		if st["w1"] != swarmpb.NodeStatus_NODE_STATUS_READY {
			return fmt.Errorf("w1 is %v", st["w1"])
		}
		return nil
	})
	_, err = ctl.RemoveNode(ctx, &swarmpb.RemoveNodeRequest{Node: "w1"})
	wantStatus(t, "RemoveNode on a Ready worker", err, codes.FailedPrecondition, "Ready", "--force")
	if n, err := secNodeCount(ctx, ctl); err != nil || n != 3 {
		t.Fatalf("node count %d (err %v) after a refused removal", n, err)
	}
	if w1Log.saw("removed from the cluster") {
		t.Fatal("w1 was told it was removed before it was")
	}

	if _, err := ctl.RemoveNode(ctx, &swarmpb.RemoveNodeRequest{Node: "w1", Force: true}); err != nil {
		t.Fatalf("RemoveNode --force on a Ready worker: %v", err)
	}
	st, err := secStatuses(ctx, ctl)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st["w1"]; ok || len(st) != 2 {
		t.Fatalf("nodes after removing w1: %v", st)
	}
	_, err = ctl.GetNode(ctx, &swarmpb.GetNodeRequest{Node: "w1"})
	wantStatus(t, "GetNode on the removed w1", err, codes.NotFound)
	// The removed worker's agent learns it on its next heartbeat.
	testutil.Eventually(t, 10*time.Second, func() error {
		if !w1Log.saw("removed from the cluster") {
			return fmt.Errorf("w1's agent has not seen the removal")
		}
		return nil
	})
	// Its certificate no longer renews, and it does not come back as a node.
	wcreds, err := ca.LoadCreds(filepath.Join(c.Get("w1").Dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	wconn := dialManager(t, c.Get("m1").Addr, wcreds.ClientTLSConfig("h2"))
	hb, err := swarmpb.NewDispatcherClient(wconn).Heartbeat(ctx, &swarmpb.HeartbeatRequest{})
	if err != nil || !hb.Removed {
		t.Fatalf("heartbeat of the removed w1: %v, %v", hb, err)
	}
	_, csr, err := ca.GenerateKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	_, err = swarmpb.NewCAClient(wconn).RenewNodeCertificate(ctx, &swarmpb.RenewNodeCertificateRequest{CsrPem: csr})
	wantStatus(t, "renewal by the removed w1", err, codes.PermissionDenied, "removed")
	if n, err := secNodeCount(ctx, ctl); err != nil || n != 2 {
		t.Fatalf("node count %d (err %v) after removal", n, err)
	}
}

// stopMembers stops every member before the test returns. testcluster
// registers each member's TempDir after its own stop cleanup, so without
// this the state dirs are deleted while the daemons still write to them
// and TempDir's cleanup fails with "directory not empty".
func stopMembers(cs ...*testcluster.Cluster) {
	for _, c := range cs {
		for _, m := range c.Members {
			m.Stop()
		}
	}
}
