package docker

import (
	"testing"

	"github.com/docker/go-connections/nat"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestPortBindingsMapping(t *testing.T) {
	spec := []*swarmpb.PortConfig{
		{TargetPort: 80, PublishedPort: 8080},                                        // ingress, tcp by default
		{Protocol: "tcp", TargetPort: 80, PublishedPort: 9080, PublishMode: "host"},  // same target, host mode
		{Protocol: "udp", TargetPort: 53, PublishedPort: 53, PublishMode: "ingress"}, // not bound (stopped)
		{Protocol: "tcp", TargetPort: 0, PublishedPort: 1},                           // ignored
	}
	pm := nat.PortMap{
		"80/tcp": {
			{HostIP: "0.0.0.0", HostPort: "32768"}, {HostIP: "::", HostPort: "32768"},
			{HostIP: "0.0.0.0", HostPort: "9080"}, {HostIP: "::", HostPort: "9080"},
		},
		"53/udp":  nil,
		"443/tcp": {{HostIP: "0.0.0.0", HostPort: "443"}}, // not ours (not in the spec)
	}
	got := portBindings(spec, pm)
	want := []*swarmpb.PortBinding{
		{Protocol: "tcp", TargetPort: 80, HostIp: "0.0.0.0", HostPort: 32768, PublishMode: "ingress"},
		{Protocol: "tcp", TargetPort: 80, HostIp: "0.0.0.0", HostPort: 9080, PublishMode: "host"},
	}
	if len(got) != len(want) {
		t.Fatalf("bindings %v, want %v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.GetProtocol() != w.GetProtocol() || g.GetTargetPort() != w.GetTargetPort() || g.GetHostIp() != w.GetHostIp() ||
			g.GetHostPort() != w.GetHostPort() || g.GetPublishMode() != w.GetPublishMode() {
			t.Errorf("binding %d: %v, want %v", i, g, w)
		}
	}
	// IPv6 listed first: the IPv4 wildcard still wins.
	got = portBindings(spec[:1], nat.PortMap{"80/tcp": {{HostIP: "::", HostPort: "1000"}, {HostIP: "0.0.0.0", HostPort: "1000"}}})
	if len(got) != 1 || got[0].GetHostIp() != "0.0.0.0" {
		t.Fatalf("dedup %v", got)
	}
}
