package docker

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"github.com/raftswarm/raftswarm/agent/exec"
	"github.com/raftswarm/raftswarm/agent/worker"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// newExecutorOpts is newExecutor with options.
func newExecutorOpts(t *testing.T, cli *client.Client, o Options) *Executor {
	t.Helper()
	nodeID := "testnode-" + randID(t)
	t.Cleanup(func() { removeNodeContainers(t, cli, nodeID) })
	e, err := NewWithOptions("", nodeID, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// freePort returns a TCP port free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) uint32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

// dialHello connects to addr until the sleeper's greeting comes back: the
// listener inside the container may not be up yet, and Docker's proxy
// accepts connections before the container does.
func dialHello(t *testing.T, ctx context.Context, addr string) string {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if rerr == nil {
				return strings.TrimSpace(line)
			}
			err = rerr
		}
		lastErr = err
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("no greeting from %s: %v", addr, lastErr)
		}
	}
}

func TestNewWithOptionsBadIngressIP(t *testing.T) {
	if _, err := NewWithOptions("", "n1", Options{IngressIP: "not-an-ip"}); err == nil {
		t.Fatal("accepted a bad ingress IP")
	}
}

func TestPublishedPorts(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	e := newExecutorOpts(t, cli, Options{IngressIP: "127.0.0.1"})
	ctx := ctxT(t)
	hostPort := freePort(t)
	tk := testTask("task"+randID(t), 1, img, "listen", "8080")
	tk.Spec.Ports = []*swarmpb.PortConfig{
		{Protocol: "tcp", TargetPort: 8080, PublishedPort: 30080, PublishMode: "ingress"},
		{Protocol: "tcp", TargetPort: 9090, PublishedPort: hostPort, PublishMode: "host"},
	}
	ctl, _ := e.Controller(tk)
	if err := ctl.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	ins, err := cli.ContainerInspect(ctx, ctl.(exec.ContainerIdentifier).ContainerID())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ins.Config.ExposedPorts["8080/tcp"]; !ok || len(ins.Config.ExposedPorts) != 2 {
		t.Errorf("exposed ports %v", ins.Config.ExposedPorts)
	}
	want := nat.PortMap{
		"8080/tcp": {{HostIP: "127.0.0.1", HostPort: ""}},
		"9090/tcp": {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(int(hostPort))}},
	}
	for k, v := range want {
		got := ins.HostConfig.PortBindings[k]
		if len(got) != 1 || got[0] != v[0] {
			t.Errorf("port bindings %s: %v, want %v", k, got, v)
		}
	}
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pr := ctl.(exec.PortReporter)
	ports, err := pr.Ports(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 2 {
		t.Fatalf("ports %v", ports)
	}
	in, host := ports[0], ports[1]
	if in.GetProtocol() != "tcp" || in.GetTargetPort() != 8080 || in.GetHostIp() != "127.0.0.1" ||
		in.GetHostPort() == 0 || in.GetHostPort() == 30080 || in.GetPublishMode() != "ingress" {
		t.Errorf("ingress binding %v", in)
	}
	if host.GetTargetPort() != 9090 || host.GetHostIp() != "127.0.0.1" || host.GetHostPort() != hostPort || host.GetPublishMode() != "host" {
		t.Errorf("host binding %v", host)
	}
	// The random host port reaches the container.
	addr := net.JoinHostPort(in.GetHostIp(), strconv.Itoa(int(in.GetHostPort())))
	if got := dialHello(t, ctx, addr); got != "hello "+tk.GetId() {
		t.Fatalf("greeting %q", got)
	}

	// Adoption: a new executor for the node reports the same bindings.
	again, err := NewWithOptions("", e.NodeID(), Options{IngressIP: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	actl, _ := again.Controller(tk)
	aports, err := actl.(exec.PortReporter).Ports(ctx)
	if err != nil || len(aports) != 2 || aports[0].GetHostPort() != in.GetHostPort() {
		t.Fatalf("adopted ports %v, %v", aports, err)
	}

	if err := ctl.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ports, err := pr.Ports(ctx); err != nil || len(ports) != 0 {
		t.Fatalf("stopped container ports %v, %v", ports, err)
	}
}

// Without an ingress IP ports are published on all addresses; Docker
// reports the wildcard, once.
func TestPublishedPortsAllAddresses(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	e := newExecutor(t, cli)
	ctx := ctxT(t)
	tk := testTask("task"+randID(t), 1, img, "listen", "8080")
	tk.Spec.Ports = []*swarmpb.PortConfig{{TargetPort: 8080, PublishedPort: 30080}} // tcp, ingress by default
	ctl, _ := e.Controller(tk)
	if err := ctl.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ports, err := ctl.(exec.PortReporter).Ports(ctx)
	if err != nil || len(ports) != 1 {
		t.Fatalf("ports %v, %v", ports, err)
	}
	p := ports[0]
	if (p.GetHostIp() != "0.0.0.0" && p.GetHostIp() != "") || p.GetHostPort() == 0 || p.GetProtocol() != "tcp" || p.GetPublishMode() != "ingress" {
		t.Fatalf("binding %v", p)
	}
	if got := dialHello(t, ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.GetHostPort())))); got != "hello "+tk.GetId() {
		t.Fatalf("greeting %q", got)
	}
}

// waitHealth polls Health until it reports want.
func waitHealth(t *testing.T, ctx context.Context, hr exec.HealthReporter, want string) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		h, err := hr.Health(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h == want {
			return
		}
		last = h
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("health %q, want %q", last, want)
		}
	}
}

func TestHealth(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	e := newExecutor(t, cli)
	ctx := ctxT(t)
	hc := func(test ...string) *swarmpb.HealthConfig {
		return &swarmpb.HealthConfig{Test: test, IntervalNs: int64(200 * time.Millisecond), TimeoutNs: int64(5 * time.Second), Retries: 1}
	}
	cases := []struct {
		name string
		hc   *swarmpb.HealthConfig
		want string
	}{
		{"healthy", hc("CMD", "/sleeper", "health"), exec.HealthHealthy},
		{"unhealthy", hc("CMD", "/sleeper", "exit", "1"), exec.HealthUnhealthy},
		{"none", nil, exec.HealthNone},
		{"disabled", &swarmpb.HealthConfig{Test: []string{"NONE"}}, exec.HealthNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tk := testTask("task"+randID(t), 1, img)
			tk.Spec.Container.Healthcheck = c.hc
			ctl, _ := e.Controller(tk)
			if err := ctl.Prepare(ctx); err != nil {
				t.Fatal(err)
			}
			if err := ctl.Start(ctx); err != nil {
				t.Fatal(err)
			}
			hr := ctl.(exec.HealthReporter)
			if c.want != exec.HealthNone {
				// Before the first check ends (interval 200ms) it is starting.
				h, err := hr.Health(ctx)
				if err != nil || (h != exec.HealthStarting && h != c.want) {
					t.Fatalf("first health %q, %v", h, err)
				}
			}
			waitHealth(t, ctx, hr, c.want)
			if err := ctl.Remove(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestWorkerHealthAndPortsOnDocker: the worker reports a task with a
// healthcheck RUNNING only once Docker finds it healthy, with the host port
// Docker picked, which reaches the container.
func TestWorkerHealthAndPortsOnDocker(t *testing.T) {
	cli := engine(t)
	img := buildImage(t, cli)
	e := newExecutorOpts(t, cli, Options{IngressIP: "127.0.0.1"})
	ctx := ctxT(t)
	tk := testTask("task"+randID(t), 1, img, "listen", "8080")
	tk.Spec.Ports = []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 8080, PublishedPort: 30080, PublishMode: "ingress"}}
	// The first check runs one interval after the start: long enough to
	// see STARTING first.
	tk.Spec.Container.Healthcheck = &swarmpb.HealthConfig{
		Test: []string{"CMD", "/sleeper", "health"}, IntervalNs: int64(time.Second), Retries: 1,
	}
	rep := &lastStatus{}
	w := worker.New(e, rep, nil, worker.WithDrainDelay(100*time.Millisecond))
	t.Cleanup(w.Close)
	if err := w.Assign(ctx, []*swarmpb.Task{tk}); err != nil {
		t.Fatal(err)
	}
	waitMessage(t, rep, tk.GetId(), "waiting for the container to become healthy")
	st := rep.waitFor(t, tk.GetId(), swarmpb.TaskState_TASK_STATE_RUNNING)
	ins, err := cli.ContainerInspect(ctx, st.GetContainerId())
	if err != nil {
		t.Fatal(err)
	}
	if ins.State.Health == nil || ins.State.Health.Status != "healthy" {
		t.Fatalf("RUNNING reported while health is %+v", ins.State.Health)
	}
	if len(st.GetPorts()) != 1 || st.GetPorts()[0].GetHostPort() == 0 {
		t.Fatalf("RUNNING status ports %v", st.GetPorts())
	}
	p := st.GetPorts()[0]
	if got := dialHello(t, ctx, net.JoinHostPort(p.GetHostIp(), strconv.Itoa(int(p.GetHostPort())))); got != "hello "+tk.GetId() {
		t.Fatalf("greeting %q", got)
	}
	if err := w.Update(ctx, nil, []string{tk.GetId()}); err != nil {
		t.Fatal(err)
	}
	waitContainers(t, e, 0)
}

// waitMessage polls until the task's last status has message msg.
func waitMessage(t *testing.T, l *lastStatus, id, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		l.mu.Lock()
		st := l.last[id]
		l.mu.Unlock()
		if st.GetMessage() == msg {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("task %s: want message %q, last status %v", id, msg, st)
		}
	}
}
