package fake

import (
	"context"
	"testing"

	"github.com/raftswarm/raftswarm/agent/exec"
	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestPortsAndHealth(t *testing.T) {
	ctx := context.Background()
	e := New("n1")
	tk := &swarmpb.Task{Id: "t1", ServiceName: "web", Slot: 1, Spec: &swarmpb.ServiceSpec{
		Container: &swarmpb.ContainerSpec{Image: "img"},
		Ports: []*swarmpb.PortConfig{
			{TargetPort: 80, PublishedPort: 8080},
			{Protocol: "UDP", TargetPort: 53, PublishedPort: 5353, PublishMode: "host"},
			{Protocol: "tcp", TargetPort: 443, PublishMode: "host"},
		},
	}}
	ctl, _ := e.Controller(tk)
	pr, hr := ctl.(exec.PortReporter), ctl.(exec.HealthReporter)
	if err := ctl.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if ports, err := pr.Ports(ctx); err != nil || len(ports) != 0 {
		t.Fatalf("ports before start %v, %v", ports, err)
	}
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ports, err := pr.Ports(ctx)
	if err != nil || len(ports) != 3 {
		t.Fatalf("ports %v, %v", ports, err)
	}
	want := []struct {
		proto      string
		target, hp uint32
		mode       string
	}{{"tcp", 80, FirstHostPort, "ingress"}, {"udp", 53, 5353, "host"}, {"tcp", 443, FirstHostPort + 1, "host"}}
	for i, w := range want {
		p := ports[i]
		if p.GetProtocol() != w.proto || p.GetTargetPort() != w.target || p.GetHostPort() != w.hp ||
			p.GetPublishMode() != w.mode || p.GetHostIp() != FakeHostIP {
			t.Errorf("binding %d: %v, want %+v", i, p, w)
		}
	}
	if h, err := hr.Health(ctx); err != nil || h != exec.HealthNone {
		t.Fatalf("default health %q, %v", h, err)
	}
	e.SetHealth("t1", exec.HealthUnhealthy)
	if h, _ := hr.Health(ctx); h != exec.HealthUnhealthy || e.HealthChecks("t1") != 2 {
		t.Fatalf("health %q after SetHealth, %d checks", h, e.HealthChecks("t1"))
	}
	if err := ctl.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ports, _ := pr.Ports(ctx); len(ports) != 0 {
		t.Fatalf("stopped container ports %v", ports)
	}
}
