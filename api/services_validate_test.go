package api

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	swarmpb "github.com/raftswarm/raftswarm/proto"
	"github.com/raftswarm/raftswarm/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// validationServer is a leader's ControlServer over a one-node store that
// holds a cluster object (with the given max_replicas setting), node n1 and,
// if withService, service web.
func validationServer(t *testing.T, maxReplicas uint64, withService bool) (*ControlServer, *state.Store) {
	t.Helper()
	st := state.New()
	r := &storeRaft{store: st}
	acts := []*swarmpb.StoreAction{
		state.Create(&swarmpb.Cluster{Id: "c", Settings: &swarmpb.ClusterSettings{MaxReplicas: maxReplicas}}),
		state.Create(&swarmpb.Node{Id: "n1", Spec: &swarmpb.NodeSpec{Labels: map[string]string{"zone": "a"}}, Description: &swarmpb.NodeDescription{Hostname: "host1"}}),
	}
	if withService {
		acts = append(acts, state.Create(&swarmpb.Service{Id: "s1", SpecVersion: 1, Spec: goodSpec()}))
	}
	dtApply(t, r, acts...)
	return &ControlServer{Store: st, Raft: leaderRaft{r}}, st
}

func goodSpec() *swarmpb.ServiceSpec {
	return &swarmpb.ServiceSpec{
		Name:      "web",
		Container: &swarmpb.ContainerSpec{Image: "nginx"},
		Replicas:  2,
		Restart:   &swarmpb.RestartPolicy{DelayNs: int64(time.Second)},
		Update:    &swarmpb.UpdateConfig{Parallelism: 1, MonitorNs: int64(time.Second)},
	}
}

func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := 0; i < n; i++ {
		m[fmt.Sprintf("label%d", i)] = "v"
	}
	return m
}

// badSpecs are specs the managers must refuse, with a word the message
// must contain.
var badSpecs = []struct {
	name string
	mod  func(*swarmpb.ServiceSpec)
	want string
}{
	{"3 MB label value", func(s *swarmpb.ServiceSpec) { s.Labels = map[string]string{"big": strings.Repeat("x", 3<<20)} }, `label "big" value is 3145728 bytes long: at most 4096 allowed`},
	{"100k labels", func(s *swarmpb.ServiceSpec) { s.Labels = manyLabels(100_000) }, "labels count 100000 exceeds the limit of 1000"},
	{"100k container labels", func(s *swarmpb.ServiceSpec) { s.Container.Labels = manyLabels(100_000) }, "container labels count 100000 exceeds the limit of 1000"},
	{"negative restart delay", func(s *swarmpb.ServiceSpec) { s.Restart.DelayNs = -int64(time.Second) }, "restart delay -1s is out of range"},
	{"negative update monitor", func(s *swarmpb.ServiceSpec) { s.Update.MonitorNs = -1 }, "update monitor -1ns is out of range"},
	{"negative stop grace", func(s *swarmpb.ServiceSpec) { s.Container.StopGracePeriodNs = -int64(time.Minute) }, "stop grace period -1m0s is out of range"},
	{"negative health interval", func(s *swarmpb.ServiceSpec) {
		s.Container.Healthcheck = &swarmpb.HealthConfig{Test: []string{"CMD", "true"}, IntervalNs: -1}
	}, "health interval -1ns is out of range"},
	{"negative cpu reservation", func(s *swarmpb.ServiceSpec) {
		s.Resources = &swarmpb.ResourceRequirements{Reservations: &swarmpb.Resources{NanoCpus: -1e9}}
	}, "reserve cpu -1 is out of range"},
	{"negative memory limit", func(s *swarmpb.ServiceSpec) {
		s.Resources = &swarmpb.ResourceRequirements{Limits: &swarmpb.Resources{MemoryBytes: -1}}
	}, "limit memory -1 bytes is out of range"},
	{"replicas 1e9", func(s *swarmpb.ServiceSpec) { s.Replicas = 1_000_000_000 }, "replicas 1000000000 exceeds the cluster's limit of 100000 (swarmctl swarm update --max-replicas)"},
	{"bad constraint", func(s *swarmpb.ServiceSpec) { s.Placement = &swarmpb.Placement{Constraints: []string{"node.zone==a"}} }, `invalid constraint "node.zone==a": unknown key "node.zone"`},
	{"bad spread", func(s *swarmpb.ServiceSpec) { s.Placement = &swarmpb.Placement{SpreadDescriptors: []string{"rack"}} }, `invalid spread descriptor "rack"`},
	{"ratio", func(s *swarmpb.ServiceSpec) { s.Update.MaxFailureRatio = 2 }, "update max failure ratio 2 is out of range"},
	{"env", func(s *swarmpb.ServiceSpec) { s.Container.Env = []string{"=x"} }, `env "=x" is not KEY=VALUE`},
	{"image", func(s *swarmpb.ServiceSpec) { s.Container.Image = "a\nb" }, `image "a\nb" contains a control character`},
}

func expectInvalid(t *testing.T, err error, want string) {
	t.Helper()
	st, ok := status.FromError(err)
	if err == nil || !ok || st.Code() != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
	if !strings.Contains(st.Message(), want) || strings.Contains(st.Message(), "\n") || len(st.Message()) > 400 {
		t.Fatalf("message %q, want one short line containing %q", st.Message(), want)
	}
}

func TestCreateServiceRefusesInvalidSpecs(t *testing.T) {
	for _, tc := range badSpecs {
		t.Run(tc.name, func(t *testing.T) {
			s, st := validationServer(t, 0, false)
			sp := goodSpec()
			tc.mod(sp)
			_, err := s.CreateService(context.Background(), &swarmpb.CreateServiceRequest{Spec: sp})
			expectInvalid(t, err, tc.want)
			st.View(func(tx state.ReadTx) {
				if n := len(tx.ListServices()); n != 0 {
					t.Fatalf("%d services stored", n)
				}
			})
		})
	}
}

func TestUpdateServiceRefusesInvalidSpecs(t *testing.T) {
	for _, tc := range badSpecs {
		t.Run(tc.name, func(t *testing.T) {
			s, st := validationServer(t, 0, true)
			var before *swarmpb.Service
			st.View(func(tx state.ReadTx) { before = tx.GetService("s1") })
			sp := goodSpec()
			tc.mod(sp)
			_, err := s.UpdateService(context.Background(), &swarmpb.UpdateServiceRequest{Service: "web", Spec: sp})
			expectInvalid(t, err, tc.want)
			st.View(func(tx state.ReadTx) {
				if after := tx.GetService("s1"); !proto.Equal(before, after) {
					t.Fatalf("service changed:\n%v\n%v", before, after)
				}
			})
		})
	}
}

// The replica cap is the cluster's setting, read from the store.
func TestServiceReplicaCapIsTheClusterSetting(t *testing.T) {
	s, st := validationServer(t, 10, true)
	sp := goodSpec()
	sp.Name, sp.Replicas = "ten", 10
	if _, err := s.CreateService(context.Background(), &swarmpb.CreateServiceRequest{Spec: sp}); err != nil {
		t.Fatalf("10 replicas under a cap of 10: %v", err)
	}
	sp = goodSpec()
	sp.Name, sp.Replicas = "eleven", 11
	_, err := s.CreateService(context.Background(), &swarmpb.CreateServiceRequest{Spec: sp})
	expectInvalid(t, err, "replicas 11 exceeds the cluster's limit of 10 (swarmctl swarm update --max-replicas)")
	// Scaling is an update: same cap.
	sp = goodSpec()
	sp.Replicas = 11
	_, err = s.UpdateService(context.Background(), &swarmpb.UpdateServiceRequest{Service: "web", Spec: sp})
	expectInvalid(t, err, "replicas 11 exceeds the cluster's limit of 10")
	st.View(func(tx state.ReadTx) {
		if tx.GetServiceByName("eleven") != nil || tx.GetService("s1").GetSpec().GetReplicas() != 2 {
			t.Fatal("a spec over the cap was stored")
		}
	})
}

// engine.labels constraints, promised by the README, are accepted.
func TestCreateServiceAcceptsEngineLabelConstraint(t *testing.T) {
	s, _ := validationServer(t, 0, false)
	sp := goodSpec()
	sp.Placement = &swarmpb.Placement{Constraints: []string{"engine.labels.gpu==yes"}, SpreadDescriptors: []string{"engine.labels.zone"}}
	if _, err := s.CreateService(context.Background(), &swarmpb.CreateServiceRequest{Spec: sp}); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateNodeRefusesInvalidLabels(t *testing.T) {
	for _, tc := range []struct {
		name string
		add  map[string]string
		want string
	}{
		{"3 MB label", map[string]string{"big": strings.Repeat("x", 3<<20)}, `node label "big" value is 3145728 bytes long: at most 4096 allowed`},
		{"100k labels", manyLabels(100_000), "node labels count 100000 exceeds the limit of 1000"},
		{"empty key", map[string]string{"": "v"}, "node label key is required"},
		{"control character", map[string]string{"k": "a\x1b[31m"}, `node label "k" value "a\x1b[31m" contains a control character`},
		// Each request is within bounds, but the merged labels are not.
		{"merged count", manyLabels(1000), "node labels count 1001 exceeds the limit of 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, st := validationServer(t, 0, false)
			_, err := s.UpdateNode(context.Background(), &swarmpb.UpdateNodeRequest{Node: "n1", LabelAdd: tc.add})
			expectInvalid(t, err, tc.want)
			st.View(func(tx state.ReadTx) {
				if l := tx.GetNode("n1").GetSpec().GetLabels(); len(l) != 1 || l["zone"] != "a" {
					t.Fatalf("labels changed: %d labels", len(l))
				}
			})
		})
	}
	s, st := validationServer(t, 0, false)
	if _, err := s.UpdateNode(context.Background(), &swarmpb.UpdateNodeRequest{Node: "n1", LabelAdd: map[string]string{"rack": "r1"}, LabelRm: []string{"zone"}}); err != nil {
		t.Fatal(err)
	}
	st.View(func(tx state.ReadTx) {
		if l := tx.GetNode("n1").GetSpec().GetLabels(); len(l) != 1 || l["rack"] != "r1" {
			t.Fatalf("labels %v", l)
		}
	})
}

func TestCreateServiceWithoutNameGetsOne(t *testing.T) {
	s, st := validationServer(t, 0, true)
	names := map[string]bool{"web": true}
	for i := 0; i < 3; i++ {
		sp := goodSpec()
		sp.Name = ""
		resp, err := s.CreateService(context.Background(), &swarmpb.CreateServiceRequest{Spec: sp})
		if err != nil {
			t.Fatalf("create without a name: %v", err)
		}
		name := resp.Service.Spec.Name
		if name == "" || names[name] || !strings.Contains(name, "_") {
			t.Fatalf("generated name %q: want a new adjective_surname name", name)
		}
		names[name] = true
		var stored *swarmpb.Service
		st.View(func(tx state.ReadTx) { stored = tx.GetServiceByName(name) })
		if stored == nil {
			t.Fatalf("service %q was not stored under its generated name", name)
		}
	}
}
