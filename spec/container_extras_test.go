package spec

import (
	"strings"
	"testing"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestValidateContainerExtras(t *testing.T) {
	ok := &swarmpb.ContainerSpec{
		Image: "nginx", StopSignal: "SIGQUIT", CapAdd: []string{"NET_ADMIN", "CAP_SYS_TIME"}, CapDrop: []string{"ALL"},
		Sysctls:    map[string]string{"net.core.somaxconn": "1024", "net/ipv4/ip_forward": "1"},
		GroupAdd:   []string{"audio", "1001"},
		Ulimits:    []*swarmpb.Ulimit{{Name: "nofile", Soft: 1024, Hard: 4096}, {Name: "core", Soft: -1, Hard: -1}},
		ExtraHosts: []string{"db.local:10.0.0.5", "v6:::1"},
	}
	if err := validateContainer(ok); err != nil {
		t.Fatalf("valid extras refused: %v", err)
	}
	for name, c := range map[string]struct {
		edit func(c *swarmpb.ContainerSpec)
		want string
	}{
		"signal":      {func(c *swarmpb.ContainerSpec) { c.StopSignal = "kill -9" }, "stop signal"},
		"signal num":  {func(c *swarmpb.ContainerSpec) { c.StopSignal = "99" }, "stop signal 99 is out of range"},
		"cap":         {func(c *swarmpb.ContainerSpec) { c.CapAdd = []string{"NET ADMIN"} }, "cap_add"},
		"sysctl":      {func(c *swarmpb.ContainerSpec) { c.Sysctls = map[string]string{"Bad Key": "1"} }, "sysctl"},
		"sysctl val":  {func(c *swarmpb.ContainerSpec) { c.Sysctls = map[string]string{"net.x": "a\nb"} }, "value"},
		"ulimit name": {func(c *swarmpb.ContainerSpec) { c.Ulimits = []*swarmpb.Ulimit{{Name: "bogus"}} }, "ulimit"},
		"ulimit soft": {func(c *swarmpb.ContainerSpec) { c.Ulimits = []*swarmpb.Ulimit{{Name: "nofile", Soft: 10, Hard: 5}} }, "soft must be at most hard"},
		"ulimit dup": {func(c *swarmpb.ContainerSpec) {
			c.Ulimits = []*swarmpb.Ulimit{{Name: "nofile"}, {Name: "nofile"}}
		}, "twice"},
		"host":   {func(c *swarmpb.ContainerSpec) { c.ExtraHosts = []string{"nohost"} }, "extra_hosts"},
		"hostip": {func(c *swarmpb.ContainerSpec) { c.ExtraHosts = []string{"a:notanip"} }, "extra_hosts"},
		"groups": {func(c *swarmpb.ContainerSpec) { c.GroupAdd = make([]string, MaxGroups+1) }, "group_add"},
	} {
		spec := &swarmpb.ContainerSpec{Image: "nginx"}
		c.edit(spec)
		err := validateContainer(spec)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, c.want)
		}
	}
}
