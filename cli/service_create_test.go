package cli

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

func TestServiceCreateSpec(t *testing.T) {
	s := int64(time.Second)
	for _, tc := range []struct {
		name string
		args []string
		want func(*swarmpb.ServiceSpec)
	}{
		{"defaults", []string{"nginx"}, func(sp *swarmpb.ServiceSpec) {}},
		{"name replicas args", []string{"--name", "web", "--replicas", "3", "alpine", "sh", "-c", "sleep 1; --not-a-flag"}, func(sp *swarmpb.ServiceSpec) {
			sp.Name, sp.Replicas = "web", 3
			sp.Container.Args = []string{"sh", "-c", "sleep 1; --not-a-flag"}
		}},
		{"proxy protocol", []string{"-p", "published=8080,target=80,proxy-protocol=v2", "nginx"}, func(sp *swarmpb.ServiceSpec) {
			sp.Ports = []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress", ProxyProtocol: "v2"}}
		}},
		{"global", []string{"--mode", "global", "nginx"}, func(sp *swarmpb.ServiceSpec) {
			sp.Mode, sp.Replicas = swarmpb.ServiceMode_SERVICE_MODE_GLOBAL, 0
		}},
		{"ports", []string{"-p", "8080:80", "--publish", "53:53/udp", "-p", "mode=host,published=9000,target=90,protocol=udp", "-p", "443", "nginx"}, func(sp *swarmpb.ServiceSpec) {
			sp.Ports = []*swarmpb.PortConfig{
				{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress"},
				{Protocol: "udp", TargetPort: 53, PublishedPort: 53, PublishMode: "ingress"},
				{Protocol: "udp", TargetPort: 90, PublishedPort: 9000, PublishMode: "host"},
				{Protocol: "tcp", TargetPort: 443, PublishMode: "ingress"},
			}
		}},
		{"env labels", []string{"-e", "A=1", "--env", "B=x=y", "--label", "team=web", "--label", "flag", "--container-label", "c=d", "nginx"}, func(sp *swarmpb.ServiceSpec) {
			sp.Container.Env = []string{"A=1", "B=x=y"}
			sp.Labels = map[string]string{"team": "web", "flag": ""}
			sp.Container.Labels = map[string]string{"c": "d"}
		}},
		{"placement", []string{"--constraint", "node.role==manager", "--constraint", "node.labels.zone != a", "--placement-pref", "spread=node.labels.rack", "--replicas-max-per-node", "2", "nginx"}, func(sp *swarmpb.ServiceSpec) {
			sp.Placement = &swarmpb.Placement{
				Constraints:        []string{"node.role==manager", "node.labels.zone!=a"},
				SpreadDescriptors:  []string{"node.labels.rack"},
				MaxReplicasPerNode: 2,
			}
		}},
		{"resources", []string{"--reserve-cpu", "0.5", "--reserve-memory", "64MiB", "--limit-cpu", "2", "--limit-memory", "512M", "nginx"}, func(sp *swarmpb.ServiceSpec) {
			sp.Resources = &swarmpb.ResourceRequirements{
				Reservations: &swarmpb.Resources{NanoCpus: 500000000, MemoryBytes: 64 << 20},
				Limits:       &swarmpb.Resources{NanoCpus: 2000000000, MemoryBytes: 512 << 20},
			}
		}},
		{"restart", []string{"--restart-condition", "on-failure", "--restart-delay", "2s", "--restart-max-attempts", "4", "--restart-window", "1m", "nginx"}, func(sp *swarmpb.ServiceSpec) {
			sp.Restart = &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_ON_FAILURE, DelayNs: 2 * s, MaxAttempts: 4, WindowNs: 60 * s}
		}},
		{"container", []string{"--mount", "type=bind,source=/data,target=/srv,readonly", "--mount", "source=vol,target=/v", "--workdir", "/w", "--user", "1000", "--hostname", "h", "--stop-grace-period", "30s", "nginx"}, func(sp *swarmpb.ServiceSpec) {
			c := sp.Container
			c.Mounts = []*swarmpb.Mount{
				{Type: swarmpb.Mount_TYPE_BIND, Source: "/data", Target: "/srv", ReadOnly: true},
				{Type: swarmpb.Mount_TYPE_VOLUME, Source: "vol", Target: "/v"},
			}
			c.Dir, c.User, c.Hostname, c.StopGracePeriodNs = "/w", "1000", "h", 30*s
		}},
		{"health", []string{"--health-cmd", "curl -f localhost", "--health-interval", "5s", "--health-timeout", "2s", "--health-retries", "3", "--health-start-period", "10s", "nginx"}, func(sp *swarmpb.ServiceSpec) {
			sp.Container.Healthcheck = &swarmpb.HealthConfig{Test: []string{"CMD-SHELL", "curl -f localhost"}, IntervalNs: 5 * s, TimeoutNs: 2 * s, Retries: 3, StartPeriodNs: 10 * s}
		}},
		{"no healthcheck", []string{"--no-healthcheck", "nginx"}, func(sp *swarmpb.ServiceSpec) {
			sp.Container.Healthcheck = &swarmpb.HealthConfig{Test: []string{"NONE"}}
		}},
		{"update rollback", []string{"--update-parallelism", "2", "--update-delay", "10s", "--update-failure-action", "rollback", "--update-monitor", "1s",
			"--update-max-failure-ratio", "0.25", "--update-order", "start-first", "--rollback-parallelism", "0", "--rollback-failure-action", "continue", "nginx"}, func(sp *swarmpb.ServiceSpec) {
			sp.Update = &swarmpb.UpdateConfig{Parallelism: 2, DelayNs: 10 * s, FailureAction: "rollback", MonitorNs: s, MaxFailureRatio: 0.25, Order: "start-first"}
			sp.Rollback = &swarmpb.UpdateConfig{Parallelism: 0, FailureAction: "continue", MonitorNs: 5 * s, Order: "stop-first"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDaemon{}
			host := startFake(t, d)
			args := tc.args
			if args[0] != "--name" {
				args = append([]string{"--name", "web"}, args...)
			}
			r := runCLI(host, append([]string{"service", "create", "-d"}, args...)...)
			expectOK(t, r)
			if r.stdout != "svcid0123456789\n" {
				t.Fatalf("stdout %q", r.stdout)
			}
			reqs := d.callsTo("CreateService")
			if len(reqs) != 1 {
				t.Fatalf("%d CreateService calls", len(reqs))
			}
			want := defaultSpec()
			want.Name = "web"
			for _, a := range tc.args {
				if a == "nginx" || a == "alpine" {
					want.Container.Image = a
					break
				}
			}
			tc.want(want)
			got := reqs[0].(*swarmpb.CreateServiceRequest).GetSpec()
			if !proto.Equal(want, got) {
				t.Fatalf("spec mismatch\nwant: %s\ngot:  %s", prototext.Format(want), prototext.Format(got))
			}
		})
	}
}

func TestServiceCreateBadFlags(t *testing.T) {
	d := &fakeDaemon{}
	host := startFake(t, d)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--replicas", "-1"}, "invalid --replicas -1: must not be negative"},
		{[]string{"--mode", "global", "--replicas", "2"}, "--replicas can only be used with replicated mode"},
		{[]string{"--mode", "both"}, `invalid --mode "both": must be replicated or global`},
		{[]string{"--constraint", "node.zone==a"}, `invalid constraint "node.zone==a": unknown key "node.zone" (expected node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.NAME or engine.labels.NAME)`},
		{[]string{"--constraint", "node.labels.zone=a"}, `invalid constraint "node.labels.zone=a": expected KEY==VALUE or KEY!=VALUE`},
		{[]string{"--constraint", "node.role==boss"}, `invalid constraint "node.role==boss": node.role must be manager or worker`},
		{[]string{"--mount", "type=bind,target=/x"}, "bind mount source is required"},
		{[]string{"--mount", "type=tmpfs,target=/x"}, `invalid --mount "type=tmpfs,target=/x": type must be bind or volume`},
		{[]string{"--mount", "source=v"}, "mount target is required"},
		{[]string{"-p", "80:70000"}, "target port 70000 is out of range: use 1 to 65535"},
		{[]string{"-p", "80:80/sctp"}, `port protocol "sctp" is invalid: use tcp or udp`},
		{[]string{"-p", "mode=host,published=80"}, `invalid --publish "mode=host,published=80": target is required`},
		{[]string{"-p", "80:80", "-p", "80:81"}, "published port 80/tcp is used more than once"},
		{[]string{"--restart-delay", "soon"}, `invalid --restart-delay "soon": expected a duration such as 10s or 1m30s`},
		{[]string{"--update-delay", "-5s"}, "update delay -5s is out of range: use 0s to 168h0m0s"},
		{[]string{"--restart-condition", "always"}, `invalid --restart-condition "always": must be none, on-failure or any`},
		{[]string{"--update-max-failure-ratio", "1.5"}, "update max failure ratio 1.5 is out of range: use 0 to 1"},
		{[]string{"--update-failure-action", "explode"}, `update failure action "explode" is invalid: use pause, continue or rollback`},
		{[]string{"--update-order", "random"}, `update order "random" is invalid: use stop-first or start-first`},
		{[]string{"--reserve-memory", "lots"}, `invalid --reserve-memory "lots": expected a size such as 64MiB, 1GiB, 512M or a number of bytes`},
		{[]string{"--limit-cpu", "-1"}, "limit cpu -1 is out of range: use 0 to 4096 CPUs"},
		{[]string{"--env", "=x"}, `env "=x" is not KEY=VALUE with a non-empty KEY`},
		{[]string{"--placement-pref", "pack=node.labels.x"}, `invalid --placement-pref "pack=node.labels.x": expected spread=node.labels.KEY`},
		{[]string{"--no-healthcheck", "--health-cmd", "true"}, "--no-healthcheck conflicts with --health-* options"},
		{[]string{"--replicas", "x"}, `invalid argument "x" for "--replicas" flag: strconv.ParseInt: parsing "x": invalid syntax`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			expectError(t, runCLI(host, append(append([]string{"service", "create", "--name", "web"}, tc.args...), "nginx")...), tc.want)
		})
	}
	expectError(t, runCLI(host, "service", "create", "--name", "x"), `"swarmctl service create" requires at least 1 argument(s) (IMAGE)`)
	if c := d.allCalls(); len(c) != 0 {
		t.Fatalf("calls sent on bad input: %v", c)
	}
}

func TestServiceUpdateSpec(t *testing.T) {
	d := &fakeDaemon{created: &swarmpb.Service{
		Id: "svcid0123456789", Meta: &swarmpb.Meta{Version: 42}, SpecVersion: 3,
		Spec: &swarmpb.ServiceSpec{
			Name:      "web",
			Labels:    map[string]string{"old": "1"},
			Container: &swarmpb.ContainerSpec{Image: "nginx:1", Env: []string{"A=1", "B=2"}},
			Replicas:  2,
			Placement: &swarmpb.Placement{Constraints: []string{"node.role==worker"}},
			Ports:     []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress"}},
		},
	}}
	host := startFake(t, d)
	r := runCLI(host, "service", "update", "-d", "--image", "nginx:2", "--replicas", "5", "--env-add", "B=3", "--env-add", "C=4", "--env-rm", "A",
		"--constraint-rm", "node.role==worker", "--constraint-add", "node.labels.zone==a", "--label-rm", "old", "--label-add", "new=2",
		"--publish-rm", "80", "--publish-add", "9090:90", "--force", "web")
	expectOK(t, r)
	if r.stdout != "web\n" {
		t.Fatalf("stdout %q", r.stdout)
	}
	reqs := d.callsTo("UpdateService")
	if len(reqs) != 1 {
		t.Fatalf("%d calls", len(reqs))
	}
	req := reqs[0].(*swarmpb.UpdateServiceRequest)
	want := &swarmpb.UpdateServiceRequest{
		Service: "svcid0123456789", Version: 42, Force: true,
		Spec: &swarmpb.ServiceSpec{
			Name:      "web",
			Labels:    map[string]string{"new": "2"},
			Container: &swarmpb.ContainerSpec{Image: "nginx:2", Env: []string{"B=3", "C=4"}},
			Replicas:  5,
			Placement: &swarmpb.Placement{Constraints: []string{"node.labels.zone==a"}},
			Ports:     []*swarmpb.PortConfig{{Protocol: "tcp", TargetPort: 90, PublishedPort: 9090, PublishMode: "ingress"}},
		},
	}
	if !proto.Equal(want, req) {
		t.Fatalf("request mismatch\nwant: %s\ngot:  %s", prototext.Format(want), prototext.Format(req))
	}

	expectError(t, runCLI(host, "service", "update", "--rollback", "--image", "x", "web"), "--rollback cannot be combined with options that change the service")
	expectError(t, runCLI(host, "service", "update", "--constraint-add", "zone==a", "web"), `invalid constraint "zone==a": unknown key "zone" (expected node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.NAME or engine.labels.NAME)`)
	if n := len(d.callsTo("UpdateService")); n != 1 {
		t.Fatalf("bad updates were sent: %d calls", n)
	}

	r = runCLI(host, "service", "rollback", "-d", "web")
	expectOK(t, r)
	reqs = d.callsTo("UpdateService")
	if last := reqs[len(reqs)-1].(*swarmpb.UpdateServiceRequest); !last.GetRollback() || last.GetService() != "web" || last.GetSpec() != nil {
		t.Fatalf("rollback request %v", last)
	}
}

// TestServiceUpdateRereadsAChangedService: an update that meets a service
// changed since it was read (the managers record a rolling update's
// progress on it) is made again on a fresh read, a bounded number of times.
func TestServiceUpdateRereadsAChangedService(t *testing.T) {
	d := &fakeDaemon{conflicts: 2, created: &swarmpb.Service{
		Id: "svcid0123456789", Meta: &swarmpb.Meta{Version: 42}, SpecVersion: 3,
		Spec: &swarmpb.ServiceSpec{Name: "web", Container: &swarmpb.ContainerSpec{Image: "nginx:1"}, Replicas: 2},
	}}
	host := startFake(t, d)
	expectOK(t, runCLI(host, "service", "update", "-d", "--replicas", "5", "web"))
	reqs := d.callsTo("UpdateService")
	if len(reqs) != 3 {
		t.Fatalf("%d update calls, want 3 (two refused as changed, then one made on a fresh read)", len(reqs))
	}
	if last := reqs[2].(*swarmpb.UpdateServiceRequest); last.GetVersion() != 44 || last.GetSpec().GetReplicas() != 5 {
		t.Fatalf("last update: version %d, replicas %d; want 44 and 5", last.GetVersion(), last.GetSpec().GetReplicas())
	}

	d.mu.Lock()
	d.conflicts = 100
	d.mu.Unlock()
	expectError(t, runCLI(host, "service", "update", "-d", "--replicas", "6", "web"), "service web changed since it was read; try again")
	if n := len(d.callsTo("UpdateService")) - 3; n != serviceUpdateAttempts {
		t.Fatalf("%d attempts on a service that keeps changing, want %d", n, serviceUpdateAttempts)
	}
}
