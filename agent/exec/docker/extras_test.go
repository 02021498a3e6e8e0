package docker

import (
	"slices"
	"testing"

	"github.com/docker/docker/api/types/container"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestApplyExtrasMapsComposeOptions(t *testing.T) {
	spec := &swarmpb.ContainerSpec{
		Image: "nginx", Tty: true, OpenStdin: true, Init: true, ReadOnly: true, StopSignal: "SIGQUIT",
		CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"ALL"}, Sysctls: map[string]string{"net.core.somaxconn": "1024"},
		GroupAdd: []string{"audio"}, Ulimits: []*swarmpb.Ulimit{{Name: "nofile", Soft: 1024, Hard: 4096}},
		ExtraHosts: []string{"db.local:10.0.0.5"},
	}
	c := &controller{e: &Executor{nodeID: "node1"}, task: &swarmpb.Task{Id: "t1", Spec: &swarmpb.ServiceSpec{Name: "s", Container: spec}}}
	cfg, hc := c.configs()
	if !cfg.Tty || !cfg.OpenStdin || cfg.StopSignal != "SIGQUIT" {
		t.Errorf("config = %+v", cfg)
	}
	if hc.Init == nil || !*hc.Init || !hc.ReadonlyRootfs || !slices.Equal([]string(hc.CapAdd), []string{"NET_ADMIN"}) ||
		!slices.Equal([]string(hc.CapDrop), []string{"ALL"}) || hc.Sysctls["net.core.somaxconn"] != "1024" ||
		!slices.Equal(hc.GroupAdd, []string{"audio"}) || !slices.Equal(hc.ExtraHosts, []string{"db.local:10.0.0.5"}) {
		t.Errorf("host config = %+v", hc)
	}
	if len(hc.Ulimits) != 1 || *hc.Ulimits[0] != (container.Ulimit{Name: "nofile", Soft: 1024, Hard: 4096}) {
		t.Errorf("ulimits = %v", hc.Ulimits)
	}
	// Without them, the engine's defaults stay.
	c.task.Spec.Container = &swarmpb.ContainerSpec{Image: "nginx"}
	cfg, hc = c.configs()
	if cfg.Tty || hc.Init != nil || hc.ReadonlyRootfs || hc.CapAdd != nil || hc.Sysctls != nil || len(hc.Ulimits) != 0 {
		t.Errorf("defaults changed: %+v %+v", cfg, hc)
	}
}
