package netplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/ca"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func testCreds(t *testing.T, root *ca.RootCA, nodeID, clusterID string) *ca.Creds {
	t.Helper()
	keyPEM, csrPEM, err := ca.GenerateKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := root.IssueNodeCert(csrPEM, nodeID, clusterID, swarmpb.NodeRole_NODE_ROLE_WORKER)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.NewCreds(root.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testRoot(t *testing.T) *ca.RootCA {
	t.Helper()
	r, err := ca.NewRootCA()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tunnelPlane starts a Plane for nodeID with creds serving the data port on
// 127.0.0.1:0 (no Run: only the tunnel), and returns its address.
func tunnelPlane(t *testing.T, creds *ca.Creds, nodeID string, images ImageSource) (*Plane, string) {
	t.Helper()
	p := New(Config{
		NodeID:    nodeID,
		ServerTLS: creds.ServerTLSConfig,
		ClientTLS: func() *tls.Config { return creds.ClientTLSConfig("unused") },
		Images:    images,
	})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.wg.Add(1)
	go p.serveTunnel(ln)
	t.Cleanup(func() {
		ln.Close()
		p.shutdown()
	})
	return p, ln.Addr().String()
}

// tunnelView: redis task r2 runs on node-b; web task w1 on node-a; both on
// appnet. With peerOnNet false, node-a has no task on appnet.
func tunnelView(bAddr string, peerOnNet bool) *swarmpb.EndpointsMessage {
	v := &swarmpb.EndpointsMessage{
		Networks: []*swarmpb.NetworkView{{Id: appnet, Name: "appnet", Subnet: "10.96.0.0/20"}},
		Services: []*swarmpb.DiscoveryService{
			{ServiceId: "svc-redis", Name: "redis",
				Networks: []*swarmpb.DiscoveryAttachment{{NetworkId: appnet, Vip: "10.96.0.2"}},
				Tasks:    []*swarmpb.DiscoveryTask{{TaskId: "r2", NodeId: "node-b"}}},
		},
		Nodes: []*swarmpb.NodeDataAddr{{NodeId: "node-b", Addr: bAddr}},
	}
	if peerOnNet {
		v.Services = append(v.Services, &swarmpb.DiscoveryService{ServiceId: "svc-web", Name: "web",
			Networks: []*swarmpb.DiscoveryAttachment{{NetworkId: appnet, Vip: "10.96.0.3"}},
			Tasks:    []*swarmpb.DiscoveryTask{{TaskId: "w1", NodeId: "node-a"}}})
	}
	return v
}

// tunnelPair: node-a and node-b of one cluster; node-b runs r2 at
// 127.0.0.42:port (a backendServer named R).
func tunnelPair(t *testing.T, peerOnNet bool) (a, b *Plane, bAddr string, port int) {
	t.Helper()
	root := testRoot(t)
	a, _ = tunnelPlane(t, testCreds(t, root, "node-a", "cluster-1"), "node-a", nil)
	b, bAddr = tunnelPlane(t, testCreds(t, root, "node-b", "cluster-1"), "node-b", nil)
	port, _ = backendServer(t, "127.0.0.42", 0, "R")
	v := tunnelView(bAddr, peerOnNet)
	b.tbl.Store(BuildTable(TableInput{View: v, NodeID: "node-b", Local: map[string]map[string]netip.Addr{appnet: {"r2": mp("127.0.0.42")}}}, nil))
	a.tbl.Store(BuildTable(TableInput{View: v, NodeID: "node-a"}, nil))
	return a, b, bAddr, port
}

func connectHeader(task string, port int) *swarmpb.TunnelHeader {
	return &swarmpb.TunnelHeader{Kind: swarmpb.TunnelHeader_KIND_CONNECT, NetworkId: appnet, TaskId: task, Port: uint32(port)}
}

func tunnelRoundTrip(c net.Conn, msg string) (string, error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(closeWriter).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestTunnelConnect(t *testing.T) {
	a, _, bAddr, port := tunnelPair(t, true)
	ctx := context.Background()
	for i := range 3 { // later connections resume the TLS session
		c, _, err := a.dialTunnel(ctx, "node-b", bAddr, connectHeader("r2", port))
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && !c.ConnectionState().DidResume {
			t.Errorf("connection %d did not resume the TLS session", i)
		}
		if c.ConnectionState().Version != tls.VersionTLS13 {
			t.Errorf("TLS version %x", c.ConnectionState().Version)
		}
		if cs := c.ConnectionState(); cs.CurveID != tls.X25519 {
			t.Errorf("key exchange %v, want X25519 (the cheaper handshake of the data path)", cs.CurveID)
		}
		got, err := tunnelRoundTrip(c, "ping")
		if err != nil || got != "R:ping" {
			t.Fatalf("through the tunnel: %q, %v", got, err)
		}
	}
}

func TestTunnelThroughProxy(t *testing.T) {
	a, _, _, port := tunnelPair(t, true)
	var dst atomic.Pointer[netip.AddrPort]
	a.origDst = func(*net.TCPConn) (netip.AddrPort, error) { return *dst.Load(), nil }
	vip := netip.AddrPortFrom(mp("10.96.0.2"), uint16(port))
	dst.Store(&vip)
	pr, err := a.startProxy(mp("127.0.0.1"), appnet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pr.close)
	got, err := roundTrip(proxyAddr(pr), "via proxy")
	if err != nil || got != "R:via proxy" {
		t.Fatalf("%q, %v", got, err)
	}
	// tasks.redis on node-a: a node-local address whose target is r2.
	addrs, _ := a.table().Resolve("tasks.redis", []string{appnet})
	if len(addrs) != 1 {
		t.Fatalf("tasks.redis = %v", addrs)
	}
	taskDst := netip.AddrPortFrom(addrs[0], uint16(port))
	dst.Store(&taskDst)
	if got, err := roundTrip(proxyAddr(pr), "task"); err != nil || got != "R:task" {
		t.Fatalf("to the task address: %q, %v", got, err)
	}
	if st := a.Stats()["svc-redis"]; st.Connections != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTunnelRefusals(t *testing.T) {
	a, b, bAddr, port := tunnelPair(t, false) // node-a has no task on appnet
	ctx := context.Background()
	_, reply, err := a.dialTunnel(ctx, "node-b", bAddr, connectHeader("r2", port))
	if err == nil || reply == nil || !strings.Contains(reply.GetError(), "node node-a has no task on network") {
		t.Fatalf("peer not on the network: %v (reply %v)", err, reply)
	}
	// Now node-a is on the network, but asks for a task node-b does not run,
	// a network node-b is not on, or port 0.
	v := tunnelView(bAddr, true)
	b.tbl.Store(BuildTable(TableInput{View: v, NodeID: "node-b", Local: map[string]map[string]netip.Addr{appnet: {"r2": mp("127.0.0.42")}}}, nil))
	for _, h := range []*swarmpb.TunnelHeader{
		connectHeader("w1", port),
		{Kind: swarmpb.TunnelHeader_KIND_CONNECT, NetworkId: "other", TaskId: "r2", Port: uint32(port)},
		connectHeader("r2", 0),
		{Kind: swarmpb.TunnelHeader_KIND_IMAGE, ImageId: "sha256:" + strings.Repeat("a", 64)}, // b serves no images
	} {
		if _, reply, err := a.dialTunnel(ctx, "node-b", bAddr, h); err == nil || reply == nil || reply.GetOk() {
			t.Fatalf("header %v accepted: %v", h, err)
		}
	}
	// The data port is not node-c's.
	if _, _, err := a.dialTunnel(ctx, "node-c", bAddr, connectHeader("r2", port)); err == nil {
		t.Fatal("dialed node-c, node-b answered, and the client accepted it")
	}
	// Still works for the right request.
	c, _, err := a.dialTunnel(ctx, "node-b", bAddr, connectHeader("r2", port))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestTunnelOtherClusterRefused(t *testing.T) {
	_, _, bAddr, port := tunnelPair(t, true)
	// Same node ID, another cluster's root: the TLS handshake fails.
	other, _ := tunnelPlane(t, testCreds(t, testRoot(t), "node-a", "cluster-2"), "node-a", nil)
	if _, _, err := other.dialTunnel(context.Background(), "node-b", bAddr, connectHeader("r2", port)); err == nil {
		t.Fatal("a node of another cluster got through")
	}
}

func TestTunnelSameRootOtherClusterID(t *testing.T) {
	root := testRoot(t)
	_, bAddr := tunnelPlane(t, testCreds(t, root, "node-b", "cluster-1"), "node-b", nil)
	x, _ := tunnelPlane(t, testCreds(t, root, "node-a", "cluster-x"), "node-a", nil)
	if _, _, err := x.dialTunnel(context.Background(), "node-b", bAddr, connectHeader("r2", 1)); err == nil {
		t.Fatal("a certificate naming another cluster got through")
	}
}

func TestTunnelRejectsBadHeaders(t *testing.T) {
	a, _, bAddr, _ := tunnelPair(t, true)
	// No client certificate: the handshake fails.
	c, err := tls.Dial("tcp4", bAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{TunnelALPN}})
	if err == nil {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}
	// An oversized length prefix from a valid client: the server hangs up
	// without reading on or answering.
	cfg, err := a.tunnelClientTLS("node-b")
	if err != nil {
		t.Fatal(err)
	}
	c, err = tls.Dial("tcp4", bAddr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	c.Write([]byte{0xff, 0xff, 0xff, 0xff})
	if b, err := io.ReadAll(c); len(b) != 0 || isTimeout(err) {
		t.Fatalf("oversized header answered: %q, %v", b, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

type fakeImages struct{ data []byte }

func (f fakeImages) SaveImage(_ context.Context, id string) (io.ReadCloser, error) {
	if id != "sha256:"+strings.Repeat("b", 64) {
		return nil, errors.New("no such image")
	}
	return io.NopCloser(bytes.NewReader(f.data)), nil
}

func TestTunnelImage(t *testing.T) {
	root := testRoot(t)
	data := bytes.Repeat([]byte("layer"), 200_000) // 1 MB
	a, _ := tunnelPlane(t, testCreds(t, root, "node-a", "cluster-1"), "node-a", nil)
	_, bAddr := tunnelPlane(t, testCreds(t, root, "node-b", "cluster-1"), "node-b", fakeImages{data})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := a.FetchImage(ctx, "node-b", bAddr, "sha256:"+strings.Repeat("b", 64))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("image: %d bytes, %v", len(got), err)
	}
	if _, err := a.FetchImage(ctx, "node-b", bAddr, "sha256:"+strings.Repeat("c", 64)); err == nil || !strings.Contains(err.Error(), "no such image") {
		t.Fatalf("missing image: %v", err)
	}
	if _, err := a.FetchImage(ctx, "node-b", bAddr, "redis:latest"); err == nil {
		t.Fatal("a non-ID image reference was sent")
	}
}

func TestFrameLimits(t *testing.T) {
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 0x10, 0x01}) // 4097 bytes
	if err := readFrame(&buf, &swarmpb.TunnelHeader{}); err == nil {
		t.Fatal("oversized frame accepted")
	}
	h := &swarmpb.TunnelHeader{TaskId: strings.Repeat("x", 5000)}
	if err := writeFrame(io.Discard, h); err == nil {
		t.Fatal("oversized frame written")
	}
	buf.Reset()
	h = connectHeader("r2", 80)
	if err := writeFrame(&buf, h); err != nil {
		t.Fatal(err)
	}
	var got swarmpb.TunnelHeader
	if err := readFrame(&buf, &got); err != nil || got.GetTaskId() != "r2" || got.GetPort() != 80 {
		t.Fatalf("%v %v", &got, err)
	}
}
