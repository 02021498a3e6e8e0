package node_test

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	"github.com/raftswarm/raftswarm/internal/dial"
	"github.com/raftswarm/raftswarm/internal/testcluster"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/node"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// What a worker reports about itself and its tasks is a claim: these
// tests send forged reports with a worker's own credentials, straight to
// the leader, as a compromised worker would.

// clDial connects to a manager with tlsCfg from the local address src, as
// the member at src would.
func clDial(t *testing.T, addr, src string, tlsCfg credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	opts := append(dial.DialOptions(net.ParseIP(src)), grpc.WithTransportCredentials(tlsCfg))
	conn, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// clWorker returns a dispatcher client speaking for member w to the
// leader, from w's own address, and w's node ID.
func clWorker(t *testing.T, c *testcluster.Cluster, w *testcluster.Member) (swarmpb.DispatcherClient, string) {
	t.Helper()
	creds, err := ca.LoadCreds(filepath.Join(w.Dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	leader := c.Leader(tkWait)
	conn := clDial(t, leader.Addr, w.Ingress, credentials.NewTLS(creds.ClientTLSConfig("h2")))
	return swarmpb.NewDispatcherClient(conn), creds.Identity().NodeID
}

func clNode(c *testcluster.Cluster, id string) *swarmpb.Node {
	var n *swarmpb.Node
	c.Leader(tkWait).Node.Manager().Store().View(func(tx state.ReadTx) { n = tx.GetNode(id) })
	return n
}

func TestForgedHeartbeatsRefused(t *testing.T) {
	c := testcluster.New(t, 1, 1, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	w1 := c.Get("w1")
	disp, id := clWorker(t, c, w1)
	honest := func() *swarmpb.NodeDescription {
		return &swarmpb.NodeDescription{Hostname: "w1", Os: "linux", Arch: "amd64", EngineVersion: "fake",
			Resources: &swarmpb.Resources{NanoCpus: 4e9, MemoryBytes: 1 << 30}}
	}
	forged := map[string]func(d *swarmpb.NodeDescription){
		"3 MB hostname":        func(d *swarmpb.NodeDescription) { d.Hostname = strings.Repeat("h", 3<<20) },
		"control characters":   func(d *swarmpb.NodeDescription) { d.Hostname = "w1\nfake-node   Ready   Active   Leader" },
		"escape sequence":      func(d *swarmpb.NodeDescription) { d.Hostname = "\x1b[31mw1" },
		"absurd CPUs":          func(d *swarmpb.NodeDescription) { d.Resources.NanoCpus = 1 << 62 },
		"negative memory":      func(d *swarmpb.NodeDescription) { d.Resources.MemoryBytes = -1 },
		"huge engine version":  func(d *swarmpb.NodeDescription) { d.EngineVersion = strings.Repeat("9", 1<<20) },
		"control in engine os": func(d *swarmpb.NodeDescription) { d.Os = "linux\r\n" },
	}
	for name, mutate := range forged {
		d := honest()
		mutate(d)
		_, err := disp.Heartbeat(ctx, &swarmpb.HeartbeatRequest{Description: d})
		wantStatus(t, name, err, codes.InvalidArgument, "refused")
		if msg := status.Convert(err).Message(); len(msg) > 300 || strings.ContainsAny(msg, "\n\x1b") {
			t.Fatalf("%s: the refusal is not one short line: %q", name, msg)
		}
		n := clNode(c, id)
		got := n.GetDescription()
		if got.GetHostname() != "w1" || len(got.GetEngineVersion()) > 100 || got.GetResources().GetNanoCpus() > 1e12 || got.GetResources().GetMemoryBytes() < 0 || got.GetOs() == "linux\r\n" {
			t.Fatalf("%s: stored description %.200v", name, got)
		}
	}

	// A foreign address in a heartbeat is not stored: the node's address is
	// the one its connection came from at join.
	before := clNode(c, id).GetAddr()
	if h, _, _ := net.SplitHostPort(before); h != w1.Ingress {
		t.Fatalf("w1 recorded at %q, want its own address %s", before, w1.Ingress)
	}
	if _, err := disp.Heartbeat(ctx, &swarmpb.HeartbeatRequest{Description: honest(), Addr: "10.66.66.66:2377"}); err != nil {
		t.Fatal(err)
	}
	if _, err := disp.Heartbeat(ctx, &swarmpb.HeartbeatRequest{Addr: "127.0.0.1:2377"}); err != nil {
		t.Fatal(err)
	}
	if got := clNode(c, id).GetAddr(); got != before {
		t.Fatalf("a heartbeat moved w1 from %s to %s", before, got)
	}
}

// A burst of description changes makes a bounded number of Raft writes,
// and the latest description still lands once the node's budget allows.
func TestDescriptionWritesRateLimited(t *testing.T) {
	c := testcluster.New(t, 1, 1, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	disp, id := clWorker(t, c, c.Get("w1"))
	testutil.Eventually(t, tkWait, func() error {
		if v := clNode(c, id).GetDescription().GetEngineVersion(); v != "fake" {
			return fmt.Errorf("w1's engine version %q", v)
		}
		return nil
	})

	var writes atomic.Int64
	events, cancel := c.Leader(tkWait).Node.Manager().Store().Watch()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range events {
			if n := ev.Node(); n != nil && n.Id == id {
				writes.Add(1)
			}
		}
	}()
	start := time.Now()
	for i := range 30 {
		d := &swarmpb.NodeDescription{Hostname: "w1", Os: "linux", Arch: "amd64", EngineVersion: fmt.Sprintf("forged-%d", i),
			Resources: &swarmpb.Resources{NanoCpus: 4e9}}
		if _, err := disp.Heartbeat(ctx, &swarmpb.HeartbeatRequest{Description: d}); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	// Let the watch catch up with what was committed: one more write after
	// the burst, which the watch sees after every earlier one.
	tkCreate(t, c, "barrier", id)
	testutil.Eventually(t, tkWait, func() error {
		var seen bool
		c.Leader(tkWait).Node.Manager().Store().View(func(tx state.ReadTx) { seen = tx.GetTask("barrier") != nil })
		if !seen {
			return fmt.Errorf("barrier not applied")
		}
		return nil
	})
	cancel()
	<-done
	// Description writes: 3 at once, then one per 2 s (the honest agent's
	// own heartbeats draw on the same budget). Status writes are not
	// limited: allow a Down and a Ready should a loaded machine starve the
	// agent for a few periods.
	bound := int64(3 + 2 + elapsed/(2*time.Second))
	if n := writes.Load(); n > bound {
		t.Fatalf("30 description changes in %v made %d node writes, want at most %d", elapsed, n, bound)
	}
	// The honest agent's description comes back: changes are deferred, not lost.
	testutil.Eventually(t, tkWait, func() error {
		if v := clNode(c, id).GetDescription().GetEngineVersion(); v != "fake" {
			return fmt.Errorf("w1's engine version %q", v)
		}
		return nil
	})
}

// A status report whose published host address is not the node's own
// never reaches the stored task or the routing mesh's table.
func TestForgedPortBindingKeptOutOfMesh(t *testing.T) {
	c := testcluster.New(t, 1, 1, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	w1 := c.Get("w1")
	disp, id := clWorker(t, c, w1)

	sp := tkSpec("pub")
	sp.Ports = []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 18080}}
	task := tkTask("pub", id)
	task.Spec = sp
	tkApply(t, c, state.Create(&swarmpb.Service{Id: "svc-pub", Spec: sp}), state.Create(task))
	tkWaitState(t, c, "pub", swarmpb.TaskState_TASK_STATE_RUNNING)

	stream, err := disp.Endpoints(ctx, &swarmpb.EndpointsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	own := w1.Ingress
	// waitTable reads the table until one has the backend want.
	waitTable := func(want string) []string {
		t.Helper()
		for {
			msg, err := stream.Recv()
			if err != nil {
				t.Fatalf("waiting for %s in the table: %v", want, err)
			}
			var addrs []string
			for _, p := range msg.GetPorts() {
				for _, b := range p.GetBackends() {
					addrs = append(addrs, b.GetAddr())
				}
			}
			for _, a := range addrs {
				if a == want {
					return addrs
				}
			}
		}
	}
	waitTable(net.JoinHostPort(own, "30000"))

	// The forged report: a foreign backend, and a genuine-looking one on
	// a new port so that the table visibly changes after the report.
	_, err = disp.UpdateTaskStatus(ctx, &swarmpb.UpdateTaskStatusRequest{Updates: []*swarmpb.TaskStatusUpdate{{
		TaskId: "pub",
		Status: &swarmpb.TaskStatus{State: swarmpb.TaskState_TASK_STATE_RUNNING, Message: "forged", Ports: []*swarmpb.PortBinding{
			{Protocol: "tcp", TargetPort: 80, HostIp: "10.66.66.66", HostPort: 4444, PublishMode: "ingress"},
			{Protocol: "tcp", TargetPort: 80, HostIp: "0.0.0.0", HostPort: 31999, PublishMode: "ingress"},
			{Protocol: "tcp", TargetPort: 22, HostIp: own, HostPort: 2222, PublishMode: "ingress"},
		}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	addrs := waitTable(net.JoinHostPort(own, "31999"))
	for _, a := range addrs {
		if h, _, _ := net.SplitHostPort(a); h != own {
			t.Fatalf("the routing table holds %s, not on w1's address %s: %v", a, own, addrs)
		}
	}
	stored := tkGet(c, "pub").GetStatus()
	if stored.GetMessage() != "forged" {
		t.Fatalf("the report's valid part was not stored: %v", stored)
	}
	for _, b := range stored.GetPorts() {
		if b.GetHostIp() == "10.66.66.66" || b.GetTargetPort() == 22 {
			t.Fatalf("a forged binding was stored: %v", stored.GetPorts())
		}
	}
}

// A worker naming itself after the start of another node's ID does not
// become what that prefix refers to: the reference is refused as
// ambiguous, listing both nodes, and nobody is promoted.
func TestAmbiguousNodeReferenceRefused(t *testing.T) {
	c := testcluster.New(t, 1, 1, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	m1ID := c.Get("m1").NodeID()
	w1 := c.Get("w1")
	disp, w1ID := clWorker(t, c, w1)
	// Only the forged heartbeats speak for w1 from now on.
	w1.Stop()
	prefix := m1ID[:8]
	if _, err := disp.Heartbeat(ctx, &swarmpb.HeartbeatRequest{Description: &swarmpb.NodeDescription{Hostname: prefix}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, tkWait, func() error {
		if h := clNode(c, w1ID).GetDescription().GetHostname(); h != prefix {
			return fmt.Errorf("w1's hostname %q", h)
		}
		return nil
	})
	role := swarmpb.NodeRole_NODE_ROLE_MANAGER
	_, err := c.Control().UpdateNode(ctx, &swarmpb.UpdateNodeRequest{Node: prefix, DesiredRole: &role})
	wantStatus(t, "promote "+prefix, err, codes.InvalidArgument, "ambiguous", m1ID, w1ID)
	if r := clNode(c, w1ID).GetSpec().GetDesiredRole(); r != swarmpb.NodeRole_NODE_ROLE_WORKER {
		t.Fatalf("w1 is now meant to be %v", r)
	}
	// The full ID always resolves.
	got, err := c.Control().GetNode(ctx, &swarmpb.GetNodeRequest{Node: m1ID})
	if err != nil || got.GetNode().GetNode().GetId() != m1ID {
		t.Fatalf("GetNode by full ID: %v, %v", got, err)
	}
}

// A joining node's hostname and address are checked by the manager it
// joins through; the daemon refuses a bad --hostname before that.
func TestJoinClaimsChecked(t *testing.T) {
	c := testcluster.New(t, 1, 0, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	m1 := c.Get("m1")

	if _, err := node.New(node.Config{StateDir: t.TempDir(), Hostname: "bad\x1b[31mname"}); err == nil || !strings.Contains(err.Error(), "hostname") {
		t.Fatalf("node.New with a control character in the hostname: %v", err)
	}

	tok, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		t.Fatal(err)
	}
	mcreds, err := ca.LoadCreds(filepath.Join(m1.Dir, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(src, hostname, addr string) (*swarmpb.IssueNodeCertificateResponse, error) {
		conn := clDial(t, m1.Addr, src, credentials.NewTLS(ca.BootstrapTLSConfig(mcreds.RootPool())))
		_, csr, err := ca.GenerateKeyAndCSR()
		if err != nil {
			t.Fatal(err)
		}
		return swarmpb.NewCAClient(conn).IssueNodeCertificate(ctx, &swarmpb.IssueNodeCertificateRequest{
			Token: tok.Token, CsrPem: csr, Hostname: hostname, Addr: addr})
	}
	const src = "127.0.0.77"
	for name, h := range map[string]string{
		"3 MB hostname":     strings.Repeat("h", 3<<20),
		"newline":           "w9\nm1   Ready",
		"escape sequence":   "w9\x1b[31m",
		"empty":             "",
		"bidi override":     "w9\u202e",
		"surrounding space": " w9",
	} {
		_, err := issue(src, h, src+":2377")
		wantStatus(t, "join with a hostname: "+name, err, codes.InvalidArgument, "hostname")
		if msg := status.Convert(err).Message(); len(msg) > 300 || strings.ContainsAny(msg, "\n\x1b") {
			t.Fatalf("%s: the refusal is not one short line: %q", name, msg)
		}
	}
	// An advertised IP that is not where the node connects from.
	_, err = issue(src, "w9", "10.66.66.66:2377")
	wantStatus(t, "join advertising a foreign address", err, codes.InvalidArgument, "connects from", src)
	if n, err := secNodeCount(ctx, c.Control()); err != nil || n != 1 {
		t.Fatalf("node count after refused joins: %d (err %v), want 1", n, err)
	}
	// With no address advertised, the one seen on the connection is recorded.
	resp, err := issue(src, "w9", "")
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Control().GetNode(ctx, &swarmpb.GetNodeRequest{Node: resp.NodeId})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.GetNode().GetNode().GetAddr(); got != src+":2377" {
		t.Fatalf("recorded address %q, want %s:2377", got, src)
	}
}

// A join relayed by a follower records the joining node's address, not
// the follower's (the leader sees the follower connect).
func TestJoinThroughFollowerRecordsJoinerAddress(t *testing.T) {
	c := testcluster.New(t, 2, 0, testcluster.Options{})
	defer stopMembers(c)
	ctx := secCtx(t, 60*time.Second)
	follower := c.Get("m2")
	if c.Leader(tkWait) == follower {
		follower = c.Get("m1")
	}
	tok, err := c.Control().GetJoinToken(ctx, &swarmpb.GetJoinTokenRequest{Role: swarmpb.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		t.Fatal(err)
	}
	w := c.Add("w1")
	resp, err := w.Local().Join(ctx, &swarmpb.JoinRequest{Token: tok.Token, RemoteAddr: follower.Addr, AdvertiseAddr: w.Addr})
	if err != nil {
		t.Fatalf("join through the follower: %v", err)
	}
	if got := clNode(c, resp.NodeId).GetAddr(); got != w.Addr {
		t.Fatalf("recorded address %q, want the joiner's %s (follower at %s)", got, w.Addr, follower.Addr)
	}
}
