package docker

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	rsexec "github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/netplane"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestBridgeNames(t *testing.T) {
	if got := BridgeName("0123456789abcdef", "netid0123", "appnet"); got != "rs-appnet-netid0-01234567" {
		t.Errorf("BridgeName = %q", got)
	}
	long := BridgeName("0123456789abcdef", "netid0123", strings.Repeat("n", 100))
	if len(long) != 64 || !strings.HasSuffix(long, "n-netid0-01234567") || !strings.HasPrefix(long, "rs-nnn") {
		t.Errorf("long BridgeName = %q (%d)", long, len(long))
	}
	if got := BridgeName("n1", "", "a b/c"); got != "rs-a-b-c-n1" {
		t.Errorf("BridgeName sanitised = %q", got)
	}
	a, b := BridgeInterface("node1", "net1"), BridgeInterface("node2", "net1")
	if len(a) != 14 || !strings.HasPrefix(a, "rs") || a == b || a != BridgeInterface("node1", "net1") {
		t.Errorf("BridgeInterface %q %q", a, b)
	}
}

// A task with networks on an executor without a data plane is rejected
// with a clear error, before anything is created. No Docker needed.
func TestPrepareNetworksWithoutAttacher(t *testing.T) {
	e := newWithEngine(fakeEngine(t, "/never"), "n1", defaultTimeouts)
	tk := &swarmpb.Task{Id: "t1", ServiceName: "web", Slot: 1, Spec: &swarmpb.ServiceSpec{
		Container: &swarmpb.ContainerSpec{Image: "busybox"},
		Networks:  []*swarmpb.NetworkAttachmentConfig{{Target: "net1"}},
	}}
	ctl, _ := e.Controller(tk)
	err := ctl.Prepare(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "cannot attach containers to networks") {
		t.Fatalf("Prepare = %v", err)
	}
	// The attacher's error is the task's error.
	e.SetNetworkAttacher(func(context.Context, *swarmpb.Task) (netplane.Attachment, error) {
		return netplane.Attachment{}, errors.New("nftables unusable: not root")
	})
	err = ctl.Prepare(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "nftables unusable: not root") {
		t.Fatalf("Prepare = %v", err)
	}
}

// newNetExecutor is newExecutor whose engine networks are removed too when
// the test ends (after its containers).
func newNetExecutor(t *testing.T, cli *client.Client, nodeID string) *Executor {
	t.Helper()
	t.Cleanup(func() { removeNodeNetworks(t, cli, nodeID) })
	t.Cleanup(func() { removeNodeContainers(t, cli, nodeID) })
	e, err := NewWithOptions("", nodeID, Options{IngressIP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func removeNodeNetworks(t *testing.T, cli *client.Client, nodeID string) {
	ctx := context.Background()
	list, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", rsexec.LabelNodeID+"="+nodeID))})
	if err != nil {
		t.Errorf("cleanup list networks: %v", err)
		return
	}
	for _, n := range list {
		if err := cli.NetworkRemove(ctx, n.ID); err != nil {
			t.Errorf("cleanup remove network %s: %v", n.Name, err)
		}
	}
}

// planeStub attaches a task the way netplane.Plane does: the engine
// network of each of its networks, DNS on the gateways.
func planeStub(e *Executor) func(context.Context, *swarmpb.Task) (netplane.Attachment, error) {
	return func(ctx context.Context, t *swarmpb.Task) (netplane.Attachment, error) {
		var a netplane.Attachment
		for _, n := range t.GetSpec().GetNetworks() {
			b, err := e.EnsureBridge(ctx, netplane.BridgeRequest{NetworkID: n.GetTarget(), NetworkName: "net-" + n.GetTarget()})
			if err != nil {
				return a, err
			}
			a.Networks = append(a.Networks, netplane.AttachedNetwork{NetworkID: n.GetTarget(), DockerName: b.DockerName, Aliases: n.GetAliases()})
			a.DNS = append(a.DNS, b.Gateway)
		}
		return a, nil
	}
}

func TestBridgesOnEngine(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	nodeID := randID(t) + "testnode"
	e := newNetExecutor(t, cli, nodeID)
	other := newNetExecutor(t, cli, randID(t)+"testnode")
	ctx := ctxT(t)
	netA, netB := "neta"+randID(t), "netb"+randID(t)

	// Create: named, labelled, its interface named by us, a subnet the
	// engine chose.
	ba, err := e.EnsureBridge(ctx, netplane.BridgeRequest{NetworkID: netA, NetworkName: "appnet"})
	if err != nil {
		t.Fatal(err)
	}
	if ba.NetworkID != netA || ba.DockerName != BridgeName(nodeID, netA, "appnet") || ba.Interface != BridgeInterface(nodeID, netA) ||
		!ba.Subnet.IsValid() || !ba.Subnet.Contains(ba.Gateway) {
		t.Fatalf("bridge %+v", ba)
	}
	ins, err := cli.NetworkInspect(ctx, ba.DockerName, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ins.Driver != "bridge" || ins.Labels[rsexec.LabelNodeID] != nodeID || ins.Labels[LabelNetworkID] != netA {
		t.Fatalf("engine network %+v", ins)
	}
	if out, err := exec.Command("ip", "-br", "addr", "show", "dev", ba.Interface).CombinedOutput(); err == nil &&
		!strings.Contains(string(out), ba.Gateway.String()) {
		t.Errorf("interface %s lacks gateway %s: %s", ba.Interface, ba.Gateway, out)
	}
	// Again: the same network (adopted by label), not a new one.
	again, err := e.EnsureBridge(ctx, netplane.BridgeRequest{NetworkID: netA, NetworkName: "appnet"})
	if err != nil || again != ba {
		t.Fatalf("EnsureBridge again = %+v, %v; want %+v", again, err, ba)
	}
	bb, err := e.EnsureBridge(ctx, netplane.BridgeRequest{NetworkID: netB, NetworkName: "other", Internal: true})
	if err != nil {
		t.Fatal(err)
	}
	if bb.Subnet.Overlaps(ba.Subnet) {
		t.Fatalf("subnets overlap: %v %v", ba.Subnet, bb.Subnet)
	}
	if ins, err := cli.NetworkInspect(ctx, bb.DockerName, network.InspectOptions{}); err != nil || !ins.Internal {
		t.Fatalf("internal network %+v, %v", ins, err)
	}
	// Another node on the same engine, same cluster network: its own.
	bo, err := other.EnsureBridge(ctx, netplane.BridgeRequest{NetworkID: netA, NetworkName: "appnet"})
	if err != nil || bo.DockerName == ba.DockerName || bo.Interface == ba.Interface || bo.Subnet.Overlaps(ba.Subnet) {
		t.Fatalf("other node's bridge %+v, %v (ours %+v)", bo, err, ba)
	}

	// A task on both networks: created on the first with its aliases,
	// connected to the second, DNS on the gateways; its published port
	// still answers on the ingress IP.
	e.SetNetworkAttacher(planeStub(e))
	tk := testTask("task"+randID(t), 1, img, "listen", "8080")
	tk.Spec.Networks = []*swarmpb.NetworkAttachmentConfig{{Target: netA, Aliases: []string{"cache"}}, {Target: netB}}
	tk.Spec.Ports = []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 8080, PublishMode: "ingress"}}
	ctl, _ := e.Controller(tk)
	if err := ctl.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cins, err := cli.ContainerInspect(ctx, ctl.(rsexec.ContainerIdentifier).ContainerID())
	if err != nil {
		t.Fatal(err)
	}
	if string(cins.HostConfig.NetworkMode) != ba.DockerName || !slices.Equal(cins.HostConfig.DNS, []string{ba.Gateway.String(), bb.Gateway.String()}) {
		t.Errorf("network mode %q, DNS %v", cins.HostConfig.NetworkMode, cins.HostConfig.DNS)
	}
	epA, epB := cins.NetworkSettings.Networks[ba.DockerName], cins.NetworkSettings.Networks[bb.DockerName]
	if epA == nil || epB == nil || !slices.Contains(epA.Aliases, "cache") {
		t.Fatalf("container networks %v", cins.NetworkSettings.Networks)
	}
	ports, err := ctl.(rsexec.PortReporter).Ports(ctx)
	if err != nil || len(ports) != 1 || ports[0].GetHostPort() == 0 {
		t.Fatalf("ports %v, %v", ports, err)
	}
	if got := dialHello(t, ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].GetHostPort())))); got != "hello "+tk.GetId() {
		t.Fatalf("published port greeting %q", got)
	}

	// Endpoints: the task's address on each bridge, which reaches it.
	for _, b := range []netplane.Bridge{ba, bb} {
		eps, err := e.Endpoints(ctx, b.DockerName)
		if err != nil {
			t.Fatal(err)
		}
		ip, ok := eps[tk.GetId()]
		if len(eps) != 1 || !ok || !b.Subnet.Contains(ip) {
			t.Fatalf("endpoints of %s: %v (subnet %v)", b.DockerName, eps, b.Subnet)
		}
		if got := dialHello(t, ctx, netip.AddrPortFrom(ip, 8080).String()); got != "hello "+tk.GetId() {
			t.Fatalf("greeting at %v: %q", ip, got)
		}
	}
	if eps, err := other.Endpoints(ctx, bo.DockerName); err != nil || len(eps) != 0 {
		t.Fatalf("other node's endpoints %v, %v", eps, err)
	}
	if _, err := other.Endpoints(ctx, ba.DockerName); err == nil {
		t.Fatal("a node read another node's endpoints")
	}

	// A restarted daemon lists what it made, and finds the same networks
	// (same gateways: the running container's DNS stays valid).
	restarted := newNetExecutor(t, cli, nodeID)
	list, err := restarted.ListBridges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || !slices.Contains(list, ba) || !slices.Contains(list, bb) {
		t.Fatalf("ListBridges = %+v, want %+v and %+v", list, ba, bb)
	}
	if b, err := restarted.EnsureBridge(ctx, netplane.BridgeRequest{NetworkID: netA, NetworkName: "appnet"}); err != nil || b != ba {
		t.Fatalf("adopted %+v, %v", b, err)
	}

	// Remove: refused while a container is attached, then done; a
	// missing network is fine; another node's is refused.
	if err := restarted.RemoveBridge(ctx, ba.DockerName); err == nil {
		t.Fatal("removed a network with a container attached")
	}
	if err := other.RemoveBridge(ctx, bb.DockerName); err == nil || !strings.Contains(err.Error(), "not this node's") {
		t.Fatalf("other node removing ours: %v", err)
	}
	if err := ctl.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	for _, b := range []netplane.Bridge{ba, bb} {
		if err := restarted.RemoveBridge(ctx, b.DockerName); err != nil {
			t.Fatal(err)
		}
		if err := restarted.RemoveBridge(ctx, b.DockerName); err != nil {
			t.Fatalf("removing a removed network: %v", err)
		}
	}
	if list, err := restarted.ListBridges(ctx); err != nil || len(list) != 0 {
		t.Fatalf("ListBridges after removal = %+v, %v", list, err)
	}
	if list, err := other.ListBridges(ctx); err != nil || len(list) != 1 || list[0] != bo {
		t.Fatalf("other node's ListBridges = %+v, %v", list, err)
	}
}

// A cluster network removed and created again under the same name (a stack
// redeployed at once) gets an engine network of its own beside the old
// one, which waits to be removed; a name taken by a network that is not
// ours is an error naming it.
func TestEnsureBridgeNameTaken(t *testing.T) {
	cli := engine(t)
	nodeID := randID(t) + "testnode"
	e := newNetExecutor(t, cli, nodeID)
	ctx := ctxT(t)
	old, err := e.EnsureBridge(ctx, netplane.BridgeRequest{NetworkID: "old" + randID(t), NetworkName: "reused"})
	if err != nil {
		t.Fatal(err)
	}
	newID := "new" + randID(t)
	b, err := e.EnsureBridge(ctx, netplane.BridgeRequest{NetworkID: newID, NetworkName: "reused"})
	if err != nil {
		t.Fatal(err)
	}
	if b.DockerName == old.DockerName || b.NetworkID != newID || b.Subnet.Overlaps(old.Subnet) {
		t.Fatalf("new network's bridge %+v shares the old one's (%+v)", b, old)
	}
	if list, err := e.ListBridges(ctx); err != nil || len(list) != 2 {
		t.Fatalf("ListBridges = %+v, %v", list, err)
	}
	if err := e.RemoveBridge(ctx, old.DockerName); err != nil {
		t.Fatal(err)
	}
	if list, err := e.ListBridges(ctx); err != nil || len(list) != 1 || list[0] != b {
		t.Fatalf("ListBridges after removing the old one = %+v, %v", list, err)
	}

	fid := "f" + randID(t)
	foreign := BridgeName(nodeID, fid, "foreign")
	if _, err := cli.NetworkCreate(ctx, foreign, network.CreateOptions{Driver: "bridge", Labels: map[string]string{"raftswarm-test": "1"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.NetworkRemove(context.Background(), foreign) })
	if _, err := e.EnsureBridge(ctx, netplane.BridgeRequest{NetworkID: fid, NetworkName: "foreign"}); err == nil || !strings.Contains(err.Error(), "docker network rm "+foreign) {
		t.Fatalf("EnsureBridge over a foreign network: %v", err)
	}
	if err := e.RemoveBridge(ctx, foreign); err == nil {
		t.Fatal("removed a foreign network")
	}
}

// A container that cannot join all its networks never runs: the engine
// refuses the connection (Prepare fails and removes the container) or, for
// a created container, records it and refuses the start; either error
// names the network.
func TestMissingNetworkNeverRuns(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	e := newNetExecutor(t, cli, randID(t)+"testnode")
	ctx := ctxT(t)
	netA := "neta" + randID(t)
	e.SetNetworkAttacher(func(ctx context.Context, _ *swarmpb.Task) (netplane.Attachment, error) {
		b, err := e.EnsureBridge(ctx, netplane.BridgeRequest{NetworkID: netA, NetworkName: "a"})
		if err != nil {
			return netplane.Attachment{}, err
		}
		return netplane.Attachment{
			Networks: []netplane.AttachedNetwork{{NetworkID: netA, DockerName: b.DockerName}, {NetworkID: "gone", DockerName: "rs-gone-" + randID(t)}},
			DNS:      []netip.Addr{b.Gateway},
		}, nil
	})
	tk := testTask("task"+randID(t), 1, img)
	tk.Spec.Networks = []*swarmpb.NetworkAttachmentConfig{{Target: netA}, {Target: "gone"}}
	ctl, _ := e.Controller(tk)
	err := ctl.Prepare(ctx)
	if err == nil {
		err = ctl.Start(ctx)
	} else if list, lerr := e.Containers(ctx); lerr != nil || len(list) != 0 {
		t.Fatalf("containers left after a failed Prepare: %+v, %v", list, lerr)
	}
	if err == nil || !strings.Contains(err.Error(), "rs-gone-") {
		t.Fatalf("Prepare/Start = %v, want an error naming the missing network", err)
	}
}

// Engine network calls are bounded like the others.
func TestNetworkCallTimesOut(t *testing.T) {
	const d = 300 * time.Millisecond
	e := newWithEngine(fakeEngine(t, "/networks"), "n1", callTimeouts{inspect: d, list: d, create: d, stop: d})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := e.ListBridges(ctx)
	if !errors.Is(err, ErrEngineTimeout) || !strings.Contains(err.Error(), "NetworkList") || ctx.Err() != nil {
		t.Fatalf("ListBridges on a hung engine: %v", err)
	}
}
