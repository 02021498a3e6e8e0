package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/exec/fake"
	"github.com/raftswarm/raftswarm/internal/testutil"
	"github.com/raftswarm/raftswarm/netplane"
	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/grpc"
)

// netDispatcher is a leader that assigns a fixed task set, streams one
// discovery view, and records heartbeats and task statuses.
type netDispatcher struct {
	swarmpb.UnimplementedDispatcherServer
	addr  string
	tasks []*swarmpb.Task
	view  *swarmpb.EndpointsMessage

	mu     sync.Mutex
	desc   *swarmpb.NodeDescription
	beats  int // heartbeats received
	states map[string]*swarmpb.TaskStatus
}

func (d *netDispatcher) Heartbeat(_ context.Context, req *swarmpb.HeartbeatRequest) (*swarmpb.HeartbeatResponse, error) {
	d.mu.Lock()
	d.desc = req.GetDescription()
	d.beats++
	d.mu.Unlock()
	return &swarmpb.HeartbeatResponse{
		PeriodNs: int64(20 * time.Millisecond), Managers: []string{d.addr},
		Role: swarmpb.NodeRole_NODE_ROLE_WORKER, DesiredRole: swarmpb.NodeRole_NODE_ROLE_WORKER,
	}, nil
}

func (d *netDispatcher) Session(_ *swarmpb.SessionRequest, s grpc.ServerStreamingServer[swarmpb.SessionMessage]) error {
	if err := s.Send(&swarmpb.SessionMessage{Kind: swarmpb.SessionMessage_KIND_FULL, Tasks: d.tasks, Managers: []string{d.addr}}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (d *netDispatcher) UpdateTaskStatus(_ context.Context, req *swarmpb.UpdateTaskStatusRequest) (*swarmpb.UpdateTaskStatusResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, u := range req.GetUpdates() {
		d.states[u.GetTaskId()] = u.GetStatus()
	}
	return &swarmpb.UpdateTaskStatusResponse{}, nil
}

func (d *netDispatcher) Endpoints(_ *swarmpb.EndpointsRequest, s grpc.ServerStreamingServer[swarmpb.EndpointsMessage]) error {
	if d.view != nil {
		if err := s.Send(d.view); err != nil {
			return err
		}
	}
	<-s.Context().Done()
	return nil
}

func (d *netDispatcher) lastDesc() *swarmpb.NodeDescription {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.desc
}

func (d *netDispatcher) state(taskID string) *swarmpb.TaskStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.states[taskID]
}

// runAgent serves d and runs an agent with cfg against it until the test
// ends.
func runAgent(t *testing.T, d *netDispatcher, cfg Config) *Agent {
	t.Helper()
	ln := listenLoopback(t)
	d.addr = ln.Addr().String()
	d.states = map[string]*swarmpb.TaskStatus{}
	conns := serveDispatcher(t, ln, d)
	cfg.Managers, cfg.Conns = []string{d.addr}, conns
	a := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return a
}

func networkTask(id string) *swarmpb.Task {
	return &swarmpb.Task{
		Id: id, ServiceId: "svc1", ServiceName: "web", Slot: 1, NodeId: "n1",
		DesiredState: swarmpb.TaskState_TASK_STATE_RUNNING,
		Spec: &swarmpb.ServiceSpec{
			Name:      "web",
			Container: &swarmpb.ContainerSpec{Image: "img"},
			Networks:  []*swarmpb.NetworkAttachmentConfig{{Target: "net1", Aliases: []string{"cache"}}},
		},
	}
}

// stubPlanes replaces the rules and the plane constructors for one test.
func stubPlanes(t *testing.T, rules func(string) (netplane.Rules, error), plane func(netplane.Config) dataPlane) {
	oldRules, oldPlane := newRules, newPlane
	newRules, newPlane = rules, plane
	t.Cleanup(func() { newRules, newPlane = oldRules, oldPlane })
}

// A fake engine has no bridges: no data plane, and a task on a network
// runs all the same.
func TestTaskOnNetworkRunsOnFakeEngine(t *testing.T) {
	stubPlanes(t, func(string) (netplane.Rules, error) {
		t.Error("kernel rules made for an engine without bridges")
		return nil, errors.New("unexpected")
	}, func(netplane.Config) dataPlane {
		t.Error("data plane made for an engine without bridges")
		return &recPlane{}
	})
	tk := networkTask("t1")
	d := &netDispatcher{tasks: []*swarmpb.Task{tk}}
	fe := fake.New("n1")
	runAgent(t, d, Config{NodeID: "n1", AdvertiseAddr: "127.0.0.1:1", Hostname: "h1", IngressAddr: "127.0.0.1", DataPort: 4790,
		Executor: func(string) (exec.Executor, error) { return fe, nil }})
	testutil.Eventually(t, 10*time.Second, func() error {
		if st := d.state(tk.GetId()); st.GetState() != swarmpb.TaskState_TASK_STATE_RUNNING {
			return fmt.Errorf("task state %v (%s), want RUNNING", st.GetState(), st.GetErr())
		}
		return nil
	})
	desc := d.lastDesc()
	if desc.GetDataPort() != 0 || len(desc.GetNetworks()) != 0 {
		t.Fatalf("a node without a data plane reports data port %d, networks %v", desc.GetDataPort(), desc.GetNetworks())
	}
}

// bridgedExecutor is a fake engine with bridges, like the docker one.
type bridgedExecutor struct {
	*fake.Executor
	mu     sync.Mutex
	attach func(context.Context, *swarmpb.Task) (netplane.Attachment, error)
}

func (b *bridgedExecutor) EnsureBridge(context.Context, netplane.BridgeRequest) (netplane.Bridge, error) {
	return netplane.Bridge{}, errors.New("not in the stub")
}
func (b *bridgedExecutor) RemoveBridge(context.Context, string) error { return nil }
func (b *bridgedExecutor) ListBridges(context.Context) ([]netplane.Bridge, error) {
	return nil, nil
}
func (b *bridgedExecutor) Endpoints(context.Context, string) (map[string]netip.Addr, error) {
	return nil, nil
}
func (b *bridgedExecutor) SaveImage(context.Context, string) (io.ReadCloser, error) {
	return nil, errors.New("no images")
}
func (b *bridgedExecutor) SetNetworkAttacher(f func(context.Context, *swarmpb.Task) (netplane.Attachment, error)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attach = f
}
func (b *bridgedExecutor) attacher() func(context.Context, *swarmpb.Task) (netplane.Attachment, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attach
}

// recPlane records how the agent uses its data plane.
type recPlane struct {
	cfg     netplane.Config
	running chan struct{}
	views   chan *swarmpb.EndpointsMessage
}

func (p *recPlane) Run(ctx context.Context) error {
	close(p.running)
	<-ctx.Done()
	return nil
}
func (p *recPlane) Update(v *swarmpb.EndpointsMessage) {
	select {
	case p.views <- v:
	default:
	}
}
func (p *recPlane) Attach(_ context.Context, t *swarmpb.Task) (netplane.Attachment, error) {
	return netplane.Attachment{Networks: []netplane.AttachedNetwork{{NetworkID: t.GetSpec().GetNetworks()[0].GetTarget(), DockerName: "rs-net1-n1"}}}, nil
}
func (p *recPlane) Report() []*swarmpb.NodeNetwork {
	return []*swarmpb.NodeNetwork{{NetworkId: "net1", DockerNetwork: "rs-net1-n1", Bridge: "rs0123", Subnet: "172.20.0.0/16", Gateway: "172.20.0.1", Tasks: 1}}
}

func (p *recPlane) FetchImage(context.Context, string, string, string) (io.ReadCloser, error) {
	return nil, errors.New("recPlane: no images")
}

type stubRules struct{}

func (stubRules) Apply(context.Context, netplane.RuleSet) error { return nil }
func (stubRules) Remove(context.Context) error                  { return nil }

// An engine with bridges gets a data plane: configured for the node (data
// address on the advertised host, TLS, bridges, rules, images), run, fed
// every discovery view, reported in heartbeats, and attaching the
// executor's containers.
func TestDataPlaneWiring(t *testing.T) {
	rp := &recPlane{running: make(chan struct{}), views: make(chan *swarmpb.EndpointsMessage, 1)}
	stubPlanes(t, func(string) (netplane.Rules, error) { return stubRules{}, nil },
		func(cfg netplane.Config) dataPlane { rp.cfg = cfg; return rp })
	be := &bridgedExecutor{Executor: fake.New("n1")}
	view := &swarmpb.EndpointsMessage{Networks: []*swarmpb.NetworkView{{Id: "net1", Name: "appnet", Subnet: "10.96.0.0/20"}}}
	d := &netDispatcher{view: view}
	serverTLS := func() *tls.Config { return &tls.Config{} }
	port := freeTCPPort(t, "127.0.0.7")
	runAgent(t, d, Config{NodeID: "n1", AdvertiseAddr: "127.0.0.7:2377", Hostname: "h1", DataPort: port,
		DataServerTLS: serverTLS, DataClientTLS: serverTLS,
		Executor: func(string) (exec.Executor, error) { return be, nil }})

	select {
	case <-rp.running:
	case <-time.After(10 * time.Second):
		t.Fatal("the data plane was not run")
	}
	cfg := rp.cfg
	if cfg.NodeID != "n1" || cfg.DataAddr != fmt.Sprintf("127.0.0.7:%d", port) || cfg.Bridges != netplane.Bridges(be) ||
		cfg.Rules != netplane.Rules(stubRules{}) || cfg.Images != netplane.ImageSource(be) ||
		cfg.ServerTLS == nil || cfg.ClientTLS == nil || cfg.Logger == nil {
		t.Fatalf("plane config %+v", cfg)
	}
	select {
	case v := <-rp.views:
		if len(v.GetNetworks()) != 1 || v.GetNetworks()[0].GetId() != "net1" {
			t.Fatalf("view %v", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the discovery view did not reach the data plane")
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		desc := d.lastDesc()
		if desc.GetDataPort() != uint32(port) || len(desc.GetNetworks()) != 1 || desc.GetNetworks()[0].GetDockerNetwork() != "rs-net1-n1" {
			return fmt.Errorf("heartbeat: data port %d, networks %v", desc.GetDataPort(), desc.GetNetworks())
		}
		return nil
	})
	attach := be.attacher()
	if attach == nil {
		t.Fatal("the executor got no network attacher")
	}
	a, err := attach(context.Background(), networkTask("t1"))
	if err != nil || len(a.Networks) != 1 || a.Networks[0].DockerName != "rs-net1-n1" {
		t.Fatalf("attach = %+v, %v", a, err)
	}
	if a, err := attach(context.Background(), &swarmpb.Task{Id: "t2"}); err != nil || len(a.Networks) != 0 {
		t.Fatalf("attach without networks = %+v, %v", a, err)
	}
}

// Without usable kernel rules the plane still runs (it adopts and cleans
// bridges) but tasks on networks are refused with the reason; without TLS
// or with data port 0 no listener is configured.
func TestDataPlaneWithoutRules(t *testing.T) {
	rp := &recPlane{running: make(chan struct{}), views: make(chan *swarmpb.EndpointsMessage, 1)}
	stubPlanes(t, func(string) (netplane.Rules, error) {
		return nil, errors.New("nftables unusable: operation not permitted")
	}, func(cfg netplane.Config) dataPlane { rp.cfg = cfg; return rp })
	be := &bridgedExecutor{Executor: fake.New("n1")}
	a := New(Config{NodeID: "n1", AdvertiseAddr: "127.0.0.7:2377", Hostname: "h1", DataPort: 0,
		Executor: func(string) (exec.Executor, error) { return be, nil }})
	if rp.cfg.Rules != nil || rp.cfg.DataAddr != "" || a.tasks.dataPort != 0 {
		t.Fatalf("plane config %+v, data port %d", rp.cfg, a.tasks.dataPort)
	}
	_, err := be.attacher()(context.Background(), networkTask("t1"))
	if err == nil || !strings.Contains(err.Error(), "cannot run tasks on networks") || !strings.Contains(err.Error(), "operation not permitted") {
		t.Fatalf("attach without rules: %v", err)
	}
	if _, err := be.attacher()(context.Background(), &swarmpb.Task{Id: "t2"}); err != nil {
		t.Fatalf("attach of a task without networks: %v", err)
	}
}

// freeTCPPort returns a port free on ip a moment ago.
func freeTCPPort(t *testing.T, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// A data port another program holds leaves the plane without a listener
// (and reports none) instead of stopping it.
func TestDataPortTaken(t *testing.T) {
	rp := &recPlane{running: make(chan struct{}), views: make(chan *swarmpb.EndpointsMessage, 1)}
	stubPlanes(t, func(string) (netplane.Rules, error) { return stubRules{}, nil },
		func(cfg netplane.Config) dataPlane { rp.cfg = cfg; return rp })
	ln, err := net.Listen("tcp", "127.0.0.7:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tlsCfg := func() *tls.Config { return &tls.Config{} }
	a := New(Config{NodeID: "n1", AdvertiseAddr: "127.0.0.7:2377", Hostname: "h1", DataPort: ln.Addr().(*net.TCPAddr).Port,
		DataServerTLS: tlsCfg, DataClientTLS: tlsCfg,
		Executor: func(string) (exec.Executor, error) { return &bridgedExecutor{Executor: fake.New("n1")}, nil }})
	if rp.cfg.DataAddr != "" || a.tasks.dataPort != 0 || rp.cfg.Rules == nil {
		t.Fatalf("plane config %+v, data port %d", rp.cfg, a.tasks.dataPort)
	}
}

func TestDataAddr(t *testing.T) {
	for _, tc := range []struct {
		adv  string
		port int
		want string
	}{
		{"127.0.0.11:2377", 4790, "127.0.0.11:4790"},
		{"10.0.0.5:2377", 5000, "10.0.0.5:5000"},
		{"[fd00::1]:2377", 4790, "[fd00::1]:4790"},
		{"node1.example", 4790, "node1.example:4790"},
	} {
		if got := dataAddr(tc.adv, tc.port); got != tc.want {
			t.Errorf("dataAddr(%q, %d) = %q, want %q", tc.adv, tc.port, got, tc.want)
		}
	}
}
