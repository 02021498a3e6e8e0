package spec

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"google.golang.org/protobuf/proto"
)

// validSpec is a spec that uses most fields, every one within its limits.
func validSpec() *swarmpb.ServiceSpec {
	s := int64(time.Second)
	return &swarmpb.ServiceSpec{
		Name:   "web-1_a",
		Labels: map[string]string{"team": "web", "empty": ""},
		Container: &swarmpb.ContainerSpec{
			Image:    "registry.example.com:5000/org/nginx:1.25@sha256:0123",
			Command:  []string{"/bin/sh", "-c"},
			Args:     []string{"echo 'hi'\nthere"},
			Env:      []string{"A=1", "B=x=y", "EMPTY=", "CERT=line1\nline2"},
			Labels:   map[string]string{"c": "d"},
			Dir:      "/srv",
			User:     "1000:1000",
			Hostname: "h",
			Mounts: []*swarmpb.Mount{
				{Type: swarmpb.Mount_TYPE_BIND, Source: "/data", Target: "/srv/data", ReadOnly: true},
				{Type: swarmpb.Mount_TYPE_VOLUME, Source: "vol", Target: "/v"},
				{Type: swarmpb.Mount_TYPE_VOLUME, Target: "/anon"},
			},
			StopGracePeriodNs: 10 * s,
			Healthcheck:       &swarmpb.HealthConfig{Test: []string{"CMD-SHELL", "true"}, IntervalNs: 5 * s, TimeoutNs: s, StartPeriodNs: 0, Retries: 3},
		},
		Replicas: 3,
		Restart:  &swarmpb.RestartPolicy{Condition: swarmpb.RestartPolicy_CONDITION_ON_FAILURE, DelayNs: 5 * s, WindowNs: 60 * s},
		Placement: &swarmpb.Placement{
			Constraints:       []string{"node.role==worker", "node.labels.zone != a", "engine.labels.gpu==yes"},
			SpreadDescriptors: []string{"node.labels.rack", "engine.labels.zone"},
		},
		Resources: &swarmpb.ResourceRequirements{
			Reservations: &swarmpb.Resources{NanoCpus: 5e8, MemoryBytes: 64 << 20},
			Limits:       &swarmpb.Resources{NanoCpus: 2e9, MemoryBytes: 512 << 20},
		},
		Ports: []*swarmpb.PortConfig{
			{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress"},
			{Protocol: "udp", TargetPort: 53, PublishedPort: 8080},
			{Protocol: "tcp", TargetPort: 443, PublishMode: "host"},
		},
		Update:   &swarmpb.UpdateConfig{Parallelism: 2, DelayNs: s, FailureAction: "rollback", MonitorNs: 5 * s, MaxFailureRatio: 0.5, Order: "start-first"},
		Rollback: &swarmpb.UpdateConfig{FailureAction: "continue", Order: "stop-first", MaxFailureRatio: 1},
	}
}

func bigLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := 0; i < n; i++ {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	return m
}

func TestValidateServiceSpecAccepts(t *testing.T) {
	for name, mod := range map[string]func(*swarmpb.ServiceSpec){
		"full": func(*swarmpb.ServiceSpec) {},
		"minimal": func(s *swarmpb.ServiceSpec) {
			proto.Reset(s)
			s.Name, s.Container = "a", &swarmpb.ContainerSpec{Image: "i"}
		},
		"global":           func(s *swarmpb.ServiceSpec) { s.Mode, s.Replicas = swarmpb.ServiceMode_SERVICE_MODE_GLOBAL, 0 },
		"replicas at cap":  func(s *swarmpb.ServiceSpec) { s.Replicas = 100 },
		"63-char name":     func(s *swarmpb.ServiceSpec) { s.Name = strings.Repeat("a", 63) },
		"1000 labels":      func(s *swarmpb.ServiceSpec) { s.Labels = bigLabels(MaxLabels) },
		"4 KiB label":      func(s *swarmpb.ServiceSpec) { s.Labels["big"] = strings.Repeat("x", MaxLabelValueLen) },
		"max duration":     func(s *swarmpb.ServiceSpec) { s.Restart.WindowNs = int64(MaxDuration) },
		"health none":      func(s *swarmpb.ServiceSpec) { s.Container.Healthcheck = &swarmpb.HealthConfig{Test: []string{"NONE"}} },
		"health cmd":       func(s *swarmpb.ServiceSpec) { s.Container.Healthcheck.Test = []string{"CMD", "curl", "-f", "x"} },
		"no reservations":  func(s *swarmpb.ServiceSpec) { s.Resources.Reservations = nil },
		"limit 0 is unset": func(s *swarmpb.ServiceSpec) { s.Resources.Limits = &swarmpb.Resources{} },
	} {
		t.Run(name, func(t *testing.T) {
			s := validSpec()
			mod(s)
			if err := ValidateServiceSpec(s, 100); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

func TestValidateServiceSpecRefuses(t *testing.T) {
	huge := strings.Repeat("x", 3<<20)
	for _, tc := range []struct {
		name string
		mod  func(*swarmpb.ServiceSpec)
		want string // the whole message
	}{
		{"no name", func(s *swarmpb.ServiceSpec) { s.Name = "" }, "service name is required (--name)"},
		{"dotted name", func(s *swarmpb.ServiceSpec) { s.Name = "a.b" }, `service name "a.b" is invalid: use 1-63 letters, digits, '-' or '_', starting and ending with a letter or digit`},
		{"64-char name", func(s *swarmpb.ServiceSpec) { s.Name = strings.Repeat("a", 64) }, `service name "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"... (64 bytes) is invalid: use 1-63 letters, digits, '-' or '_', starting and ending with a letter or digit`},
		{"trailing dash", func(s *swarmpb.ServiceSpec) { s.Name = "web-" }, `service name "web-" is invalid: use 1-63 letters, digits, '-' or '_', starting and ending with a letter or digit`},
		{"no container", func(s *swarmpb.ServiceSpec) { s.Container = nil }, "image is required"},
		{"empty image", func(s *swarmpb.ServiceSpec) { s.Container.Image = "" }, "image is required"},
		{"image with space", func(s *swarmpb.ServiceSpec) { s.Container.Image = "nginx latest" }, `image "nginx latest" contains whitespace`},
		{"image with escape", func(s *swarmpb.ServiceSpec) { s.Container.Image = "nginx\x1b[2J" }, `image "nginx\x1b[2J" contains a control character`},
		{"long image", func(s *swarmpb.ServiceSpec) { s.Container.Image = strings.Repeat("a", 513) }, "image is 513 bytes long: at most 512 allowed"},
		{"replicas over cap", func(s *swarmpb.ServiceSpec) { s.Replicas = 1_000_000_000 }, "replicas 1000000000 exceeds the cluster's limit of 100 (swarmctl swarm update --max-replicas)"},
		{"global with replicas", func(s *swarmpb.ServiceSpec) { s.Mode = swarmpb.ServiceMode_SERVICE_MODE_GLOBAL }, "replicas cannot be set for a global service"},
		{"global with max per node", func(s *swarmpb.ServiceSpec) {
			s.Mode, s.Replicas, s.Placement.MaxReplicasPerNode = swarmpb.ServiceMode_SERVICE_MODE_GLOBAL, 0, 2
		}, "replicas max per node cannot be set for a global service (it runs one task per node)"},
		{"unknown mode", func(s *swarmpb.ServiceSpec) { s.Mode = 7 }, "mode 7 is unknown: use replicated or global"},
		{"100k labels", func(s *swarmpb.ServiceSpec) { s.Labels = bigLabels(100_000) }, "labels count 100000 exceeds the limit of 1000"},
		{"3 MB label", func(s *swarmpb.ServiceSpec) { s.Labels["big"] = huge }, `label "big" value is 3145728 bytes long: at most 4096 allowed`},
		{"3 MB label key", func(s *swarmpb.ServiceSpec) { s.Labels[huge] = "" }, "label key is 3145728 bytes long: at most 256 allowed"},
		{"empty label key", func(s *swarmpb.ServiceSpec) { s.Labels[""] = "v" }, "label key is required"},
		{"label key with =", func(s *swarmpb.ServiceSpec) { s.Labels["a=b"] = "v" }, `label key "a=b" contains '='`},
		{"label value newline", func(s *swarmpb.ServiceSpec) { s.Labels["a"] = "x\nfake row" }, `label "a" value "x\nfake row" contains a control character`},
		{"container label", func(s *swarmpb.ServiceSpec) { s.Container.Labels["a b"] = "" }, `container label key "a b" contains whitespace`},
		{"env without =", func(s *swarmpb.ServiceSpec) { s.Container.Env = []string{"FOO"} }, `env "FOO" is not KEY=VALUE with a non-empty KEY`},
		{"env empty key", func(s *swarmpb.ServiceSpec) { s.Container.Env = []string{"=x"} }, `env "=x" is not KEY=VALUE with a non-empty KEY`},
		{"env NUL", func(s *swarmpb.ServiceSpec) { s.Container.Env = []string{"A=\x00"} }, `env "A" value contains a NUL character`},
		{"env too many", func(s *swarmpb.ServiceSpec) { s.Container.Env = make([]string, MaxEnv+1) }, "env has 1001 variables: at most 1000 allowed"},
		{"env too long", func(s *swarmpb.ServiceSpec) { s.Container.Env = []string{"A=" + strings.Repeat("x", MaxEnvLen)} }, `env "A" is 32770 bytes long: at most 32768 allowed`},
		{"args too many", func(s *swarmpb.ServiceSpec) { s.Container.Args = make([]string, MaxArgs+1) }, "args has 1001 words: at most 1000 allowed"},
		{"entrypoint too long", func(s *swarmpb.ServiceSpec) { s.Container.Command = []string{strings.Repeat("x", MaxArgLen+1)} }, "entrypoint[0] is 65537 bytes long: at most 65536 allowed"},
		{"relative workdir", func(s *swarmpb.ServiceSpec) { s.Container.Dir = "srv" }, `workdir "srv" must be an absolute path`},
		{"user with space", func(s *swarmpb.ServiceSpec) { s.Container.User = "a b" }, `user "a b" contains whitespace`},
		{"long hostname", func(s *swarmpb.ServiceSpec) { s.Container.Hostname = strings.Repeat("h", 65) }, "hostname is 65 bytes long: at most 64 allowed"},
		{"relative mount target", func(s *swarmpb.ServiceSpec) { s.Container.Mounts[0].Target = "x" }, `mount target "x" must be an absolute path other than /`},
		{"root mount target", func(s *swarmpb.ServiceSpec) { s.Container.Mounts[0].Target = "/" }, `mount target "/" must be an absolute path other than /`},
		{"duplicate mount target", func(s *swarmpb.ServiceSpec) { s.Container.Mounts[1].Target = "/srv/data/" }, `mount target "/srv/data/" is used by more than one mount`},
		{"relative bind source", func(s *swarmpb.ServiceSpec) { s.Container.Mounts[0].Source = "data" }, `bind mount source "data" must be an absolute path`},
		{"bad volume name", func(s *swarmpb.ServiceSpec) { s.Container.Mounts[1].Source = "../etc" }, `volume name "../etc" is invalid: use 1-255 letters, digits, '_', '.' or '-', starting with a letter or digit`},
		{"unknown mount type", func(s *swarmpb.ServiceSpec) { s.Container.Mounts[1].Type = 9 }, "mount type 9 is unknown: use bind, volume or tmpfs"},
		{"nil mount", func(s *swarmpb.ServiceSpec) { s.Container.Mounts = append(s.Container.Mounts, nil) }, "mount is empty"},
		{"negative stop grace", func(s *swarmpb.ServiceSpec) { s.Container.StopGracePeriodNs = -1 }, "stop grace period -1ns is out of range: use 0s to 168h0m0s"},
		{"negative restart delay", func(s *swarmpb.ServiceSpec) { s.Restart.DelayNs = -int64(time.Second) }, "restart delay -1s is out of range: use 0s to 168h0m0s"},
		{"huge restart window", func(s *swarmpb.ServiceSpec) { s.Restart.WindowNs = math.MaxInt64 }, "restart window 2562047h47m16.854775807s is out of range: use 0s to 168h0m0s"},
		{"unknown restart condition", func(s *swarmpb.ServiceSpec) { s.Restart.Condition = 5 }, "restart condition 5 is unknown: use none, on-failure or any"},
		{"negative update delay", func(s *swarmpb.ServiceSpec) { s.Update.DelayNs = -5 }, "update delay -5ns is out of range: use 0s to 168h0m0s"},
		{"negative update monitor", func(s *swarmpb.ServiceSpec) { s.Update.MonitorNs = -5 }, "update monitor -5ns is out of range: use 0s to 168h0m0s"},
		{"negative rollback monitor", func(s *swarmpb.ServiceSpec) { s.Rollback.MonitorNs = -5 }, "rollback monitor -5ns is out of range: use 0s to 168h0m0s"},
		{"health interval", func(s *swarmpb.ServiceSpec) { s.Container.Healthcheck.IntervalNs = -1 }, "health interval -1ns is out of range: use 0s to 168h0m0s"},
		{"health timeout short", func(s *swarmpb.ServiceSpec) { s.Container.Healthcheck.TimeoutNs = 10 }, "health timeout 10ns is too short: use 0 (the default) or at least 1ms"},
		{"health start", func(s *swarmpb.ServiceSpec) { s.Container.Healthcheck.StartPeriodNs = int64(8 * 24 * time.Hour) }, "health start period 192h0m0s is out of range: use 0s to 168h0m0s"},
		{"health retries", func(s *swarmpb.ServiceSpec) { s.Container.Healthcheck.Retries = -1 }, "health retries -1 is out of range: use 0 to 1000"},
		{"health form", func(s *swarmpb.ServiceSpec) { s.Container.Healthcheck.Test = []string{"RUN", "x"} }, `health check "RUN" is not NONE, CMD or CMD-SHELL`},
		{"health shell args", func(s *swarmpb.ServiceSpec) { s.Container.Healthcheck.Test = []string{"CMD-SHELL"} }, "health check CMD-SHELL takes exactly one command string"},
		{"negative cpu", func(s *swarmpb.ServiceSpec) { s.Resources.Reservations.NanoCpus = -1e9 }, "reserve cpu -1 is out of range: use 0 to 4096 CPUs"},
		{"negative memory", func(s *swarmpb.ServiceSpec) { s.Resources.Limits.MemoryBytes = -1 }, "limit memory -1 bytes is out of range: use 0 to 1125899906842624 (1 PiB)"},
		{"huge memory", func(s *swarmpb.ServiceSpec) { s.Resources.Limits.MemoryBytes = math.MaxInt64 }, "limit memory 9223372036854775807 bytes is out of range: use 0 to 1125899906842624 (1 PiB)"},
		{"reservation over limit", func(s *swarmpb.ServiceSpec) { s.Resources.Reservations.NanoCpus = 3e9 }, "reserve cpu 3 exceeds the cpu limit of 2"},
		{"memory reservation over limit", func(s *swarmpb.ServiceSpec) { s.Resources.Reservations.MemoryBytes = 1 << 30 }, "reserve memory 1073741824 bytes exceeds the memory limit of 536870912 bytes"},
		{"target port 0", func(s *swarmpb.ServiceSpec) { s.Ports[0].TargetPort = 0 }, "target port 0 is out of range: use 1 to 65535"},
		{"published port high", func(s *swarmpb.ServiceSpec) { s.Ports[0].PublishedPort = 70000 }, "published port 70000 is out of range: use 1 to 65535 (or none)"},
		{"protocol", func(s *swarmpb.ServiceSpec) { s.Ports[0].Protocol = "sctp" }, `port protocol "sctp" is invalid: use tcp or udp`},
		{"publish mode", func(s *swarmpb.ServiceSpec) { s.Ports[0].PublishMode = "vip" }, `port publish mode "vip" is invalid: use ingress or host`},
		{"proxy protocol version", func(s *swarmpb.ServiceSpec) { s.Ports[0].ProxyProtocol = "v1" }, `port proxy-protocol "v1" is invalid: use v2`},
		{"proxy protocol host mode", func(s *swarmpb.ServiceSpec) { s.Ports[0].ProxyProtocol, s.Ports[0].PublishMode = "v2", "host" },
			"port proxy-protocol applies to published tcp ports in ingress mode only (the routing mesh sends the header)"},
		{"port twice", func(s *swarmpb.ServiceSpec) { s.Ports[1].Protocol = "tcp" }, "published port 8080/tcp is used more than once"},
		{"nil port", func(s *swarmpb.ServiceSpec) { s.Ports = append(s.Ports, nil) }, "published port is empty"},
		{"bad constraint key", func(s *swarmpb.ServiceSpec) { s.Placement.Constraints = []string{"node.zone==a"} }, `invalid constraint "node.zone==a": unknown key "node.zone" (expected node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.NAME or engine.labels.NAME)`},
		{"constraint single =", func(s *swarmpb.ServiceSpec) { s.Placement.Constraints = []string{"node.labels.a=b"} }, `invalid constraint "node.labels.a=b": expected KEY==VALUE or KEY!=VALUE`},
		{"constraint control", func(s *swarmpb.ServiceSpec) { s.Placement.Constraints = []string{"node.labels.a==b\r"} }, `constraint "node.labels.a==b\r" contains a control character`},
		{"long constraint key", func(s *swarmpb.ServiceSpec) { s.Placement.Constraints = []string{strings.Repeat("k", 1000) + "==v"} },
			`invalid constraint "` + strings.Repeat("k", 64) + `"...: unknown key "` + strings.Repeat("k", 64) + `"... (expected node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.NAME or engine.labels.NAME)`},
		{"too many constraints", func(s *swarmpb.ServiceSpec) { s.Placement.Constraints = make([]string, 101) }, "constraints count 101 exceeds the limit of 100"},
		{"bad spread", func(s *swarmpb.ServiceSpec) { s.Placement.SpreadDescriptors = []string{"zone"} }, `invalid spread descriptor "zone": unknown key "zone" (expected node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.NAME or engine.labels.NAME)`},
		{"spread with space", func(s *swarmpb.ServiceSpec) { s.Placement.SpreadDescriptors = []string{"node.labels.a b"} }, `invalid spread descriptor "node.labels.a b": expected a key such as node.labels.NAME`},
		{"ratio", func(s *swarmpb.ServiceSpec) { s.Update.MaxFailureRatio = 1.5 }, "update max failure ratio 1.5 is out of range: use 0 to 1"},
		{"ratio NaN", func(s *swarmpb.ServiceSpec) { s.Rollback.MaxFailureRatio = float32(math.NaN()) }, "rollback max failure ratio NaN is out of range: use 0 to 1"},
		{"rollback rollback", func(s *swarmpb.ServiceSpec) { s.Rollback.FailureAction = "rollback" }, "rollback failure action cannot be rollback: use pause or continue"},
		{"failure action", func(s *swarmpb.ServiceSpec) { s.Update.FailureAction = "explode" }, `update failure action "explode" is invalid: use pause, continue or rollback`},
		{"order", func(s *swarmpb.ServiceSpec) { s.Update.Order = "random" }, `update order "random" is invalid: use stop-first or start-first`},
		{"object size", func(s *swarmpb.ServiceSpec) {
			s.Container.Args = make([]string, 20)
			for i := range s.Container.Args {
				s.Container.Args[i] = strings.Repeat("x", MaxArgLen)
			}
		}, "service spec is 1311331 bytes encoded: at most 1048576 allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validSpec()
			tc.mod(s)
			err := ValidateServiceSpec(s, 100)
			if err == nil {
				t.Fatal("accepted")
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n got: %s\nwant: %s", err, tc.want)
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("%v is not ErrInvalidSpec", err)
			}
			if strings.Contains(err.Error(), "\n") || len(err.Error()) > 400 {
				t.Fatalf("error is not one short line: %q", err)
			}
		})
	}
}

func TestValidateServiceSpecNil(t *testing.T) {
	if err := ValidateServiceSpec(nil, 0); err == nil || err.Error() != "service spec is required" {
		t.Fatalf("nil spec: %v", err)
	}
}

// The CLI passes 0: the cluster's cap is the managers' to check.
func TestValidateServiceSpecZeroCapSkipsReplicaCheck(t *testing.T) {
	s := validSpec()
	s.Replicas = 1_000_000_000
	if err := ValidateServiceSpec(s, 0); err != nil {
		t.Fatal(err)
	}
	if err := ValidateServiceSpec(s, MaxReplicas(nil)); err == nil || !strings.Contains(err.Error(), "limit of 100000") {
		t.Fatalf("default cap: %v", err)
	}
}

func TestValidateNodeSpec(t *testing.T) {
	ok := &swarmpb.NodeSpec{Labels: map[string]string{"zone": "a"}}
	if err := ValidateNodeSpec(ok); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s    *swarmpb.NodeSpec
		want string
	}{
		{&swarmpb.NodeSpec{Labels: bigLabels(MaxLabels + 1)}, "node labels count 1001 exceeds the limit of 1000"},
		{&swarmpb.NodeSpec{Labels: map[string]string{"a": strings.Repeat("v", 3<<20)}}, `node label "a" value is 3145728 bytes long: at most 4096 allowed`},
		{&swarmpb.NodeSpec{Labels: map[string]string{"a\tb": ""}}, `node label key "a\tb" contains a control character`},
		{&swarmpb.NodeSpec{Availability: 9}, "node availability 9 is unknown"},
		{&swarmpb.NodeSpec{DesiredRole: 9}, "node role 9 is unknown"},
	} {
		if err := ValidateNodeSpec(tc.s); err == nil || err.Error() != tc.want {
			t.Errorf("got %v, want %s", err, tc.want)
		}
	}
}

func TestParseConstraintCanonical(t *testing.T) {
	for in, want := range map[string]string{
		" node.labels.zone != a ": "node.labels.zone!=a",
		"Node.Role==Manager":      "node.role==Manager",
		"engine.labels.gpu==yes":  "engine.labels.gpu==yes",
	} {
		got, err := ParseConstraint(in)
		if err != nil || got != want {
			t.Errorf("ParseConstraint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if d, err := ParseSpreadDescriptor(" engine.labels.zone"); err != nil || d != "engine.labels.zone" {
		t.Errorf("ParseSpreadDescriptor = %q, %v", d, err)
	}
}
